//! The CPU's storage of a key/value cache: host vectors, one pair per layer.

use crate::cache::CacheLayout;

/// Keys and values of every layer, each [batch, heads, capacity, head_dim].
#[derive(Debug)]
pub struct HostKv {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    layout: CacheLayout,
}

impl HostKv {
    /// Zeroed storage for `layout`.
    pub fn new(layout: &CacheLayout) -> Self {
        let zeros = vec![vec![0.0; layout.per_layer()]; layout.layers];
        HostKv {
            keys: zeros.clone(),
            values: zeros,
            layout: *layout,
        }
    }

    /// Copies this step's keys and values for `layer` out of the fused
    /// [tokens, 3 * hidden] projection into positions `past .. past + seq`.
    pub fn append(&mut self, layer: usize, qkv: &[f32], seq: usize, past: usize) {
        let l = self.layout;
        let (d, h) = (l.head_dim, l.heads * l.head_dim);
        for b in 0..l.batch {
            for i in 0..seq {
                let row = &qkv[(b * seq + i) * 3 * h..(b * seq + i + 1) * 3 * h];
                for head in 0..l.heads {
                    let dst = ((b * l.heads + head) * l.capacity + past + i) * d;
                    let src = head * d;
                    self.keys[layer][dst..dst + d].copy_from_slice(&row[h + src..h + src + d]);
                    self.values[layer][dst..dst + d]
                        .copy_from_slice(&row[2 * h + src..2 * h + src + d]);
                }
            }
        }
    }

    /// Layer `layer`'s keys and values.
    pub fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.keys[layer], &self.values[layer])
    }

    /// The layout the storage was made for.
    pub fn layout(&self) -> &CacheLayout {
        &self.layout
    }
}
