//! The key/value cache of incremental decoding (BertLMHeadModel).

/// Keys, values and the attention mask of every token decoded so far, per layer.
///
/// Storage is sized once for `capacity` positions ([batch, heads, capacity, head_dim] per
/// layer for keys and for values), so decoding allocates nothing per step. It is made by
/// the backend that first uses the cache: host vectors on the CPU, device memory on a
/// GPU (freed when the cache is dropped).
#[derive(Debug)]
pub struct KvCache {
    pub(crate) layers: usize,
    pub(crate) batch: usize,
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) capacity: usize,
    pub(crate) len: usize,
    pub(crate) keys: Vec<Vec<f32>>,
    pub(crate) values: Vec<Vec<f32>>,
    /// [batch, capacity]: 1 where a cached token may be attended to.
    pub(crate) mask: Vec<u8>,
    /// A GPU backend's keys and values.
    pub(crate) device: Option<DeviceState>,
}

/// Backend-owned storage of a cache (device memory), opaque to everything else.
pub(crate) struct DeviceState(pub(crate) Box<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceState")
    }
}

impl KvCache {
    pub(crate) fn new(
        layers: usize,
        batch: usize,
        heads: usize,
        head_dim: usize,
        capacity: usize,
    ) -> Self {
        KvCache {
            layers,
            batch,
            heads,
            head_dim,
            capacity,
            len: 0,
            keys: Vec::new(),
            values: Vec::new(),
            mask: vec![0; batch * capacity],
            device: None,
        }
    }

    /// Allocates the host storage (CPU backend) on first use.
    pub(crate) fn ensure_host(&mut self) {
        if self.keys.len() != self.layers {
            let per_layer = self.batch * self.heads * self.capacity * self.head_dim;
            self.keys = vec![vec![0.0; per_layer]; self.layers];
            self.values = vec![vec![0.0; per_layer]; self.layers];
        }
    }

    /// Tokens cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first step.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sequences in the cache.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every cached token.
    pub fn clear(&mut self) {
        self.len = 0;
        self.mask.fill(0);
    }

    /// Copies this step's keys and values for `layer` out of the fused [tokens, 3 * hidden]
    /// projection into positions len .. len + seq.
    pub(crate) fn append(&mut self, layer: usize, qkv: &[f32], seq: usize) {
        let (d, h) = (self.head_dim, self.heads * self.head_dim);
        for b in 0..self.batch {
            for i in 0..seq {
                let row = &qkv[(b * seq + i) * 3 * h..(b * seq + i + 1) * 3 * h];
                for head in 0..self.heads {
                    let dst = ((b * self.heads + head) * self.capacity + self.len + i) * d;
                    self.keys[layer][dst..dst + d]
                        .copy_from_slice(&row[h + head * d..h + head * d + d]);
                    self.values[layer][dst..dst + d]
                        .copy_from_slice(&row[2 * h + head * d..2 * h + head * d + d]);
                }
            }
        }
    }

    /// The [batch, len + seq] mask of cached tokens followed by this step's `mask`.
    pub(crate) fn full_mask(&self, mask: &[u8], seq: usize) -> Vec<u8> {
        let keys = self.len + seq;
        let mut out = Vec::with_capacity(self.batch * keys);
        for b in 0..self.batch {
            out.extend_from_slice(&self.mask[b * self.capacity..b * self.capacity + self.len]);
            out.extend_from_slice(&mask[b * seq..(b + 1) * seq]);
        }
        out
    }

    /// Records that `seq` tokens with this `mask` were appended.
    pub(crate) fn advance(&mut self, mask: &[u8], seq: usize) {
        for b in 0..self.batch {
            let dst = b * self.capacity + self.len;
            self.mask[dst..dst + seq].copy_from_slice(&mask[b * seq..(b + 1) * seq]);
        }
        self.len += seq;
    }
}
