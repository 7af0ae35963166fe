//! Dense layer: out = act(x · wᵀ + b), weights stored [n, k] as in checkpoints.
//!
//! The backend runs linears through the packed GEMM ([`super::gemm`]); each weight is
//! packed the first time a plan uses it and kept in a [`PackedWeights`] cache for the
//! life of the backend. [`linear_unpacked`], the `gemm`-crate path on the checkpoint
//! layout, stays as the baseline the benchmarks and tests compare against.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::activation;
use super::matmul::{matmul, View};
use super::packed_linear::PackedLinear;
use crate::backend::Dtype;
use crate::config::Activation;
use crate::tensor::Tensor;
use crate::weights::WeightId;

/// Packed copies of the weights linears have used, keyed by weight id and storage address.
/// A backend belongs to one model, which owns the parameter store for as long as the
/// backend lives, so an address cannot be reused by another tensor while it is cached;
/// the address in the key keeps a backend handed a second store from mixing them up.
/// Memory: about one more copy of every linear weight (panels are zero-padded to 48
/// columns).
#[derive(Debug, Default)]
pub struct PackedWeights {
    packed: Mutex<HashMap<(WeightId, usize), Arc<PackedLinear>>>,
    /// Weights packed so far (a weight packed again in another precision counts again).
    packs: AtomicUsize,
}

impl PackedWeights {
    /// The packed form of `w` ([n, k]) in `dtype`, packing it on first use. `None` when
    /// the tensor does not hold n * k values.
    pub fn get(
        &self,
        id: WeightId,
        w: &Tensor,
        n: usize,
        k: usize,
        dtype: Dtype,
    ) -> Option<Arc<PackedLinear>> {
        let key = (id, w.data().as_ptr() as usize);
        let hit = |p: &Arc<PackedLinear>| p.shape() == (n, k) && p.dtype() == dtype;
        if let Some(p) = self.lock().get(&key).filter(|p| hit(p)) {
            return Some(Arc::clone(p));
        }
        // Packed outside the lock; two threads racing on one weight both pack it and one
        // copy wins, which is harmless.
        let p = Arc::new(PackedLinear::pack(dtype, w.data(), n, k)?);
        self.packs.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, Arc::clone(&p));
        Some(p)
    }

    /// How many times a weight was packed.
    pub fn packs(&self) -> usize {
        self.packs.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(WeightId, usize), Arc<PackedLinear>>> {
        // A panic while holding the lock cannot leave the map half-updated (inserts are
        // single calls), so a poisoned lock is still usable.
        self.packed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// out[rows, n] = act(x[rows, k] · wᵀ + b[n]) with `w` already packed (in its precision).
pub fn linear(
    x: &[f32],
    w: &PackedLinear,
    b: Option<&[f32]>,
    act: Option<Activation>,
    rows: usize,
    out: &mut [f32],
) {
    w.run(x, rows, b, act, out);
}

/// out[rows, n] = act(x[rows, k] · w[n, k]ᵀ + b[n]) through the `gemm` crate on the
/// unpacked weight, then a separate bias/activation pass (the previous CPU path).
#[allow(clippy::too_many_arguments)]
pub fn linear_unpacked(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    act: Option<Activation>,
    rows: usize,
    k: usize,
    n: usize,
    out: &mut [f32],
    threads: usize,
) {
    assert!(x.len() >= rows * k && w.len() == n * k && out.len() >= rows * n);
    matmul(
        out,
        n,
        View::rows(x, rows, k, k),
        View::transposed(w, k, n, k),
        threads,
    );
    bias_act(&mut out[..rows * n], n, b, act);
}

/// Adds a per-column bias and applies an activation to each row of `n` values.
pub fn bias_act(out: &mut [f32], n: usize, b: Option<&[f32]>, act: Option<Activation>) {
    if b.is_none() && act.is_none() {
        return;
    }
    out.par_chunks_mut(n).for_each(|row| {
        if let Some(b) = b {
            for (v, bias) in row.iter_mut().zip(b) {
                *v += bias;
            }
        }
        if let Some(act) = act {
            activation::apply_slice(act, row);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_and_unpacked_paths_agree() {
        let (rows, k, n) = (19, 64, 100);
        let x: Vec<f32> = (0..rows * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.91).cos()).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
        let tensor = Tensor::new(vec![n, k], w.clone()).expect("sizes match");
        let cache = PackedWeights::default();
        let get = |id, k, dtype| cache.get(WeightId(id), &tensor, n, k, dtype);
        let packed = get(0, k, Dtype::F32).expect("sizes match");
        let again = get(0, k, Dtype::F32).expect("cached");
        assert!(Arc::ptr_eq(&packed, &again), "packed once, then reused");
        assert!(get(1, k + 1, Dtype::F32).is_none());
        let bf16 = get(0, k, Dtype::Bf16).expect("sizes match");
        assert_eq!(bf16.dtype(), Dtype::Bf16, "another dtype repacks");
        let act = Some(Activation::Gelu);
        let (mut new, mut old) = (vec![0.0; rows * n], vec![0.0; rows * n]);
        linear(&x, &packed, Some(&b), act, rows, &mut new);
        linear_unpacked(&x, &w, Some(&b), act, rows, k, n, &mut old, 2);
        for (a, b) in new.iter().zip(&old) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
