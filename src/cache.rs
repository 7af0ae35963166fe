//! The key/value cache of incremental decoding (BertLMHeadModel).
//!
//! A [`KvCache`] keeps what every backend shares (the layout, how many tokens are
//! cached, and which of them may be attended to) and an opaque [`CacheState`] that the
//! backend which made it owns: host vectors on the CPU, device memory on a GPU.

use std::any::Any;

use crate::error::{Error, Result};

/// The shape of a cache: per layer, keys and values of [batch, heads, capacity,
/// head_dim].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLayout {
    /// Decoder layers.
    pub layers: usize,
    /// Sequences.
    pub batch: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Positions per sequence.
    pub capacity: usize,
}

impl CacheLayout {
    /// Elements of one layer's keys (or values).
    pub fn per_layer(&self) -> usize {
        self.batch * self.heads * self.capacity * self.head_dim
    }
}

/// A backend's storage of a cache, opaque to everything but that backend.
pub struct CacheState(Box<dyn Any + Send + Sync>);

impl CacheState {
    /// Wraps a backend's storage.
    pub fn new<T: Any + Send + Sync>(storage: T) -> Self {
        CacheState(Box::new(storage))
    }

    /// The storage as the backend that made it sees it.
    pub fn get_mut<T: Any>(&mut self) -> Result<&mut T> {
        self.0.downcast_mut::<T>().ok_or_else(|| {
            Error::Internal("a key/value cache reached a backend that did not make it".into())
        })
    }
}

impl std::fmt::Debug for CacheState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheState")
    }
}

/// Keys, values and the attention mask of every token decoded so far, per layer.
///
/// Storage is sized once for `capacity` positions, when the model makes the cache
/// ([`crate::Model::new_cache`]), so decoding allocates nothing per step; a cache serves
/// only the model that made it.
#[derive(Debug)]
pub struct KvCache {
    layout: CacheLayout,
    len: usize,
    /// [batch, capacity]: 1 where a cached token may be attended to.
    mask: Vec<u8>,
    /// The model that made the cache.
    owner: u64,
    state: CacheState,
}

impl KvCache {
    pub(crate) fn new(layout: CacheLayout, owner: u64, state: CacheState) -> Self {
        KvCache {
            layout,
            len: 0,
            mask: vec![0; layout.batch * layout.capacity],
            owner,
            state,
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
        self.layout.batch
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.layout.capacity
    }

    /// The cache's shape.
    pub fn layout(&self) -> CacheLayout {
        self.layout
    }

    /// Forgets every cached token.
    pub fn clear(&mut self) {
        self.len = 0;
        self.mask.fill(0);
    }

    pub(crate) fn owner(&self) -> u64 {
        self.owner
    }

    /// The backend's storage.
    pub fn state_mut(&mut self) -> &mut CacheState {
        &mut self.state
    }

    /// The [batch, len + seq] mask of cached tokens followed by this step's `mask`.
    pub fn full_mask(&self, mask: &[u8], seq: usize) -> Vec<u8> {
        let (keys, capacity) = (self.len + seq, self.layout.capacity);
        let mut out = Vec::with_capacity(self.layout.batch * keys);
        for b in 0..self.layout.batch {
            out.extend_from_slice(&self.mask[b * capacity..b * capacity + self.len]);
            out.extend_from_slice(&mask[b * seq..(b + 1) * seq]);
        }
        out
    }

    /// Records that `seq` tokens with this `mask` were appended.
    pub fn advance(&mut self, mask: &[u8], seq: usize) {
        for b in 0..self.layout.batch {
            let dst = b * self.layout.capacity + self.len;
            self.mask[dst..dst + seq].copy_from_slice(&mask[b * seq..(b + 1) * seq]);
        }
        self.len += seq;
    }
}
