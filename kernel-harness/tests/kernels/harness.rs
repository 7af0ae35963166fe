//! The emulation itself (kernels/host/cuda_host.h), checked against CUDA's documented
//! semantics: shuffles with widths and out-of-range sources, barriers with static and
//! dynamic shared memory and atomics, and the WMMA fragment layouts.

use std::ffi::c_void;

use half::f16;
use kernel_harness::launch_raw;

use super::util::expect_launch;

#[repr(C)]
struct Out<T> {
    out: *mut T,
}

#[test]
fn shuffles_follow_cuda_semantics() {
    let threads = 64usize;
    let mut out = vec![0i32; threads * 8];
    let args = Out {
        out: out.as_mut_ptr(),
    };
    // SAFETY: the kernel writes 8 ints per thread of one block of `threads`.
    expect_launch("harness_shuffles", || unsafe {
        launch_raw(
            "harness_shuffles",
            [1, 1, 1],
            [threads as u32, 1, 1],
            0,
            &args,
        )
    });
    for tid in 0..threads {
        let (warp, lane) = (tid / 32, tid % 32);
        let val = |l: usize| (100 * warp + l) as i32;
        // Out-of-segment sources return the caller's own value.
        let down = |d: usize, w: usize| {
            if lane % w + d < w {
                val(lane + d)
            } else {
                val(lane)
            }
        };
        let up = |d: usize| if lane >= d { val(lane - d) } else { val(lane) };
        let want = [
            val(lane ^ 1),
            val(lane ^ 16),
            down(3, 32),
            up(2),
            val(5),
            val(lane / 16 * 16 + 7),
            down(4, 8),
            (0..32).map(val).sum::<i32>(),
        ];
        assert_eq!(&out[tid * 8..tid * 8 + 8], &want, "thread {tid}");
    }
}

#[test]
fn blocks_have_their_own_shared_state() {
    let (blocks, threads) = (3usize, 96usize);
    let mut out = vec![0f32; blocks * (threads + 2)];
    let args = Out {
        out: out.as_mut_ptr(),
    };
    // SAFETY: each block writes threads + 2 floats of its own row; smem holds a float
    // per thread.
    expect_launch("harness_block", || unsafe {
        launch_raw(
            "harness_block",
            [blocks as u32, 1, 1],
            [threads as u32, 1, 1],
            threads * 4,
            &args,
        )
    });
    for b in 0..blocks {
        let row = &out[b * (threads + 2)..(b + 1) * (threads + 2)];
        for (t, &got) in row[..threads].iter().enumerate() {
            assert_eq!(
                got,
                ((threads - 1 - t) * 3 + b) as f32,
                "block {b} thread {t}"
            );
        }
        let total: usize = (0..threads).map(|t| t + b).sum();
        assert_eq!(row[threads], total as f32, "atomic sum, block {b}");
        assert_eq!(
            row[threads + 1],
            (0..threads).sum::<usize>() as f32,
            "block_sum, block {b}"
        );
    }
}

#[repr(C)]
struct WmmaArgs {
    a: *const c_void,
    b: *const c_void,
    c_row: *mut f32,
    c_col: *mut f32,
}

#[test]
fn wmma_layouts_follow_cuda_semantics() {
    // Small integers: exact in half and in f32 sums.
    let a: Vec<f16> = (0..256)
        .map(|i| f16::from_f32(((i * 7) % 11) as f32 - 5.0))
        .collect();
    let b: Vec<f16> = (0..256)
        .map(|i| f16::from_f32(((i * 5) % 9) as f32 - 4.0))
        .collect();
    // WMMA pointers must be 32-byte aligned, as on the GPU.
    #[repr(align(32))]
    struct Aligned([f32; 256]);
    let (mut c_row, mut c_col) = (Box::new(Aligned([0.0; 256])), Box::new(Aligned([0.0; 256])));
    #[repr(align(32))]
    struct AlignedH([f16; 256]);
    let (mut ah, mut bh) = (
        Box::new(AlignedH([f16::ZERO; 256])),
        Box::new(AlignedH([f16::ZERO; 256])),
    );
    ah.0.copy_from_slice(&a);
    bh.0.copy_from_slice(&b);
    let args = WmmaArgs {
        a: ah.0.as_ptr().cast(),
        b: bh.0.as_ptr().cast(),
        c_row: c_row.0.as_mut_ptr(),
        c_col: c_col.0.as_mut_ptr(),
    };
    // SAFETY: 16x16 tiles, 32-byte aligned, one warp.
    expect_launch("harness_wmma", || unsafe {
        launch_raw("harness_wmma", [1, 1, 1], [32, 1, 1], 0, &args)
    });
    let at = |m: &[f16], r: usize, c: usize| m[r * 16 + c].to_f32();
    for i in 0..16 {
        for j in 0..16 {
            let ab: f32 = (0..16).map(|k| at(&a, i, k) * at(&b, k, j)).sum();
            let abt: f32 = (0..16).map(|k| at(&a, i, k) * at(&b, j, k)).sum::<f32>() + 1.0;
            assert_eq!(c_row.0[i * 16 + j], ab, "a*b at ({i}, {j})");
            assert_eq!(
                c_col.0[j * 16 + i],
                abt,
                "a*b^T (col-major store) at ({i}, {j})"
            );
        }
    }
}
