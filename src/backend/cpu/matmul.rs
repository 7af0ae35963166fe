//! A safe front for the `gemm` crate: strided f32 matrix products with bounds checked
//! before the one unsafe call.

use gemm::Parallelism;

/// A read-only strided matrix view: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// Backing storage.
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix with row stride `rs`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        View {
            data,
            rows,
            cols,
            rs,
            cs: 1,
        }
    }

    /// The transpose of a row-major [cols, rows] matrix with row stride `rs`.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        View {
            data,
            rows,
            cols,
            rs: 1,
            cs: rs,
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// dst[m, n] (row stride `dst_rs`) = lhs[m, k] · rhs[k, n], overwriting dst.
/// `threads` > 1 splits the product over the rayon pool.
pub fn matmul(dst: &mut [f32], dst_rs: usize, lhs: View, rhs: View, threads: usize) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "matmul: inner dimensions differ");
    assert!(
        lhs.fits() && rhs.fits(),
        "matmul: operand view out of bounds"
    );
    assert!(
        m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len(),
        "matmul: destination out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for r in 0..m {
            dst[r * dst_rs..r * dst_rs + n].fill(0.0);
        }
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: every index the product touches was bounds-checked above against the slice
    // lengths (views via `fits`, dst via its last row); dst is exclusively borrowed and
    // cannot overlap the shared operands; read_dst = false so dst needs no initial value.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product_with_strides() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * 9).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.91).cos()).collect();
        let mut out = vec![0.0; m * 4];
        // a as [m, k] with row stride 9; w stored [n, k], used transposed.
        matmul(
            &mut out,
            4,
            View::rows(&a, m, k, 9),
            View::transposed(&w, k, n, k),
            2,
        );
        for r in 0..m {
            for c in 0..n {
                let want: f32 = (0..k).map(|i| a[r * 9 + i] * w[c * k + i]).sum();
                assert!((out[r * 4 + c] - want).abs() < 1e-5);
            }
        }
    }
}
