//! The int8 product against f64 references over awkward shapes, on every path this CPU
//! has, with one and several threads; the native and portable paths must agree exactly.
//!
//! Bounds: against the dequantized operands (t (u - z) and s q; for the outlier
//! channels x itself and w rounded to bf16), the f32 GEMM's accumulation bound (the
//! integer sums are exact; the epilogue rounds a few times); against the original
//! operands, that plus 1.01 times the sum over k of (t / 2) |w| + (s / 2) |x_q| (each
//! activation off by at most t / 2, each weight by at most s / 2), or 2^-8 |x w| for an
//! outlier channel, times the activation's slope.

use super::*;
use crate::backend::cpu::gemm::lowp_check::{check, operands, shapes, Operands, ACTS};

fn paths() -> Vec<Path> {
    [Path::Amx, Path::Native, Path::Portable]
        .into_iter()
        .filter(|p| p.int8_supported())
        .collect()
}

/// x dequantized from its per-row quantization (outlier channels exact), each row's
/// step t and each row's outlier channels.
fn dequantized_rows(x: &[f32], rows: usize, k: usize) -> (Vec<f32>, Vec<f32>, Vec<Vec<usize>>) {
    let lda = k.next_multiple_of(4);
    let mut q = QuantRows::default();
    q.quantize(Path::Portable, x, rows, k, lda);
    let xq = (0..rows * k)
        .map(|i| {
            let (r, kk) = (i / k.max(1), i % k.max(1));
            match q.row_outliers(r).contains(&kk) {
                true => x[i],
                false => q.scale[r] * (i32::from(q.data[r * lda + kk]) - q.zero[r]) as f32,
            }
        })
        .collect();
    let outliers = (0..rows).map(|r| q.row_outliers(r).to_vec()).collect();
    (xq, q.scale, outliers)
}

#[test]
fn matches_references_over_awkward_shapes() {
    eprintln!("int8 paths on this CPU: {:?}", paths());
    let mut worst = 0.0f64;
    for (variant, &(rows, k, n)) in shapes().iter().enumerate() {
        let (mut x, w, b) = operands(rows, k, n);
        if variant % 3 == 2 {
            // Skewed rows (mostly positive, as after GELU) exercise the zero point.
            x.iter_mut().for_each(|v| *v = 2.0 * *v + 1.7);
        }
        if k > 100 {
            // Outlier channels, as in BERT's hidden states.
            for r in 0..rows {
                x[r * k + 5] *= 40.0;
                x[r * k + k - 2] *= -25.0;
            }
        }
        let packed = PackedInt8::pack(&w, n, k).expect("sizes match");
        let (xq, step, outliers) = dequantized_rows(&x, rows, k);
        assert!(outliers
            .iter()
            .all(|o| o.len() == if k >= 64 { 8 } else { 0 }));
        // Each row's dequantized weights: bf16 on its own outlier channels.
        let wq: Vec<Vec<f32>> = outliers
            .iter()
            .map(|o| {
                (0..n * k)
                    .map(|i| match o.contains(&(i % k)) {
                        true => packed.outlier_weight(i / k, i % k),
                        false => packed.dequantized(i / k, i % k),
                    })
                    .collect()
            })
            .collect();
        let bias = (variant % 4 != 1).then_some(&b[..]);
        let act = ACTS[variant % ACTS.len()];
        let quant: Vec<f64> = (0..rows * n)
            .map(|i| {
                let (r, c) = (i / n, i % n);
                let wrow = &w[c * k..(c + 1) * k];
                let s = f64::from(wrow.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0);
                let t = f64::from(step[r]);
                let per_k = |kk: usize| {
                    let (xv, wv) = (f64::from(xq[r * k + kk]), f64::from(wrow[kk]));
                    match outliers[r].contains(&kk) {
                        true => 2f64.powi(-8) * (xv * wv).abs(),
                        false => t / 2.0 * wv.abs() + s / 2.0 * xv.abs(),
                    }
                };
                1.01 * (0..k).map(per_k).sum::<f64>()
            })
            .collect();
        let mut first: Option<Vec<f32>> = None;
        for path in paths() {
            for threads in [1, 4] {
                let mut out = vec![f32::NAN; rows * n + 3];
                linear_int8_with(path, threads, &x, rows, &packed, bias, act, &mut out);
                let label = format!("int8 {path:?} threads {threads} shape {:?}", (rows, k, n));
                assert!(
                    out[rows * n..].iter().all(|v| v.is_nan()),
                    "{label}: wrote past rows * n"
                );
                // Row by row, each against its own dequantized weights.
                for r in 0..rows {
                    let ops = Operands {
                        x: &x[r * k..(r + 1) * k],
                        w: &w,
                        xq: &xq[r * k..(r + 1) * k],
                        wq: &wq[r],
                        bias,
                        act,
                        shape: (1, k, n),
                    };
                    let mut row = out[r * n..(r + 1) * n].to_vec();
                    row.push(f32::NAN);
                    let label = format!("{label} row {r}");
                    worst = worst.max(check(&label, &row, &ops, &quant[r * n..(r + 1) * n]));
                }
                match &first {
                    None => first = Some(out),
                    Some(f) => assert!(
                        f.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{label}: differs from the first path's output"
                    ),
                }
            }
        }
    }
    eprintln!("int8: largest |out - f32 reference| / max |reference| = {worst:e}");
}

#[test]
fn quantized_rows_keep_zero_exact_and_propagate_non_finite_values() {
    let x = [0.0, 1.0, -0.5, 0.25, 3.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let mut q = QuantRows::default();
    q.quantize(Path::Portable, &x, 3, 4, 8);
    for r in 0..3 {
        for kk in 0..4 {
            let back = q.scale[r] * (i32::from(q.data[r * 8 + kk]) - q.zero[r]) as f32;
            let err = (back - x[r * 4 + kk]).abs();
            assert!(err <= q.scale[r] / 2.0 + 1e-6, "row {r} k {kk}: {back}");
            if x[r * 4 + kk] == 0.0 {
                assert_eq!(back, 0.0, "zero is exact");
            }
        }
        assert!(q.data[r * 8 + 4..r * 8 + 8].iter().all(|&v| v == 0), "pad");
    }
    assert_eq!(q.zero[1], 0, "a positive row has zero point 0");
    let packed = PackedInt8::pack(&[1.0, 2.0, 3.0], 1, 3).expect("sizes match");
    let mut out = [0.0f32; 2];
    linear_int8(
        &[1.0, f32::NAN, 1.0, 1.0, 1.0, 1.0],
        2,
        &packed,
        None,
        None,
        &mut out,
    );
    assert!(out[0].is_nan(), "NaN input gives a NaN output");
    assert!((out[1] - 6.0).abs() < 0.05, "{}", out[1]);
}

#[test]
fn pack_rejects_wrong_sizes_and_overlong_k() {
    assert!(PackedInt8::pack(&[0.0; 6], 2, 4).is_none());
    assert!(PackedInt8::pack(&vec![0.0; MAX_K + 1], 1, MAX_K + 1).is_none());
    let p = PackedInt8::pack(&[0.0; 8], 2, 4).expect("sizes match");
    assert_eq!((p.n(), p.k()), (2, 4));
    assert_eq!(p.dequantized(1, 3), 0.0);
}

#[test]
fn both_outlier_searches_pick_the_same_channels() {
    let (x, _, _) = operands(40, 200, 1);
    for (r, row) in x.chunks_exact(200).enumerate() {
        let mut row = row.to_vec();
        // Ties (equal |x| on both signs), a NaN and an infinity in some rows.
        if r % 3 == 0 {
            row[7] = 5.0;
            row[150] = -5.0;
            row[199] = 5.0;
        }
        if r % 4 == 1 {
            row[3] = f32::NAN;
            row[64] = f32::INFINITY;
        }
        // Large values sharing lanes of the AVX-512 search (32 apart), many equal values
        // (more candidates than it ranks) and rows of mostly NaN (fewer than it needs).
        if r % 5 == 2 {
            for j in 0..6 {
                row[10 + 32 * j] = 9.0 + j as f32;
            }
        }
        if r == 11 {
            row.fill(0.5);
            row[100] = -0.5;
        }
        if r == 13 {
            row.fill(f32::NAN);
            for j in [0, 31, 77, 130, 199] {
                row[j] = j as f32 - 90.0;
            }
        }
        let (mut native, mut body) = ([0; outliers::OUTLIERS], [0; outliers::OUTLIERS]);
        outliers::select(Path::Native.int8_supported(), &row, &mut native);
        outliers::select(false, &row, &mut body);
        assert_eq!(native, body, "row {r}");
        let mut by_size: Vec<usize> = (0..row.len()).filter(|&j| !row[j].is_nan()).collect();
        by_size.sort_by(|&a, &b| row[b].abs().total_cmp(&row[a].abs()).then(a.cmp(&b)));
        // With fewer values than channels, the rest are channel 0.
        let mut want: Vec<usize> = by_size.into_iter().take(outliers::OUTLIERS).collect();
        want.resize(outliers::OUTLIERS, 0);
        want.sort_unstable();
        assert_eq!(body.to_vec(), want, "row {r}");
    }
}
