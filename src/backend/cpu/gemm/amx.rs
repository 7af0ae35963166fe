//! Intel AMX (Advanced Matrix Extensions), shared by the bf16 and int8 products: whether
//! this CPU and OS allow it, the one tile configuration every AMX kernel here uses, and
//! the tile loop as inline assembly (Rust has no stable AMX intrinsics).
//!
//! - Detection: CPUID leaf 7 (AMX-TILE with AMX-BF16 or AMX-INT8), then Linux's
//!   permission request for the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), once
//!   per process. `BERTRT_CPU_AMX=0` turns AMX off (the AVX-512 kernels run instead).
//! - Configuration: all eight tiles are 16 rows of 64 bytes: a C tile is 16 rows by 16
//!   columns of f32 or i32, an A tile 16 rows by 64 bytes of k, a B tile 16 k-groups
//!   (pairs or quads) by 16 columns. The packed panels are already B's layout (a group
//!   row is 48 columns of 4 bytes: three B tiles side by side), so AMX reads the AVX-512
//!   kernels' weights as they are. Each task of the driver loads it ([`configure`]).
//! - A kernel call: zero C, accumulate k-step by k-step (64 bytes of k per step; see
//!   [`kernel!`] for which tiles go where), then store C to a stack buffer, from which the
//!   dtype's epilogue adds the start and writes the rows that exist. Each element of C is
//!   the same sequence of tile products, from zero, in k order, whatever the rows beside
//!   it, so a row's result does not depend on the batch.

use std::arch::asm;
use std::sync::OnceLock;

use super::NR;

/// Rows of one tile.
pub const TILE_ROWS: usize = 16;

/// Row tiles of C per call.
pub const MT: usize = 2;

/// Rows of C per call: the AMX kernels' register tile height.
pub const MR: usize = MT * TILE_ROWS;

/// Bytes of k in one tile row (32 bf16 or 64 int8 values): one k-step.
pub const STEP_BYTES: usize = 64;

/// Bytes from one k-step of a panel to the next: 16 group rows of NR columns of 4 bytes.
const PANEL_STEP: usize = TILE_ROWS * NR * 4;

/// C as the tiles store it: [`MR`] rows of [`NR`] 4-byte values (f32 or i32).
pub type Acc = [[u32; NR]; MR];

const _: () = assert!(MR == super::lowp::ROWS_PAD && STEP_BYTES == super::lowp::K_PAD_BYTES);

/// Which AMX products this CPU and OS run: (bf16, int8), found once.
fn support() -> (bool, bool) {
    static SUPPORT: OnceLock<(bool, bool)> = OnceLock::new();
    *SUPPORT.get_or_init(|| {
        if std::env::var("BERTRT_CPU_AMX").is_ok_and(|v| v.trim() == "0") {
            return (false, false);
        }
        // Leaf 7 reads as zeros on CPUs without it (callers check AVX-512 first anyway).
        let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
        let (bf16, tile, int8) = (edx >> 22 & 1 == 1, edx >> 24 & 1 == 1, edx >> 25 & 1 == 1);
        if !tile || !(bf16 || int8) || !request_tile_data() {
            return (false, false);
        }
        (bf16, int8)
    })
}

/// Asks Linux for the AMX tile data state for this process (required before the first
/// tile instruction); false where refused or on another OS.
fn request_tile_data() -> bool {
    #[cfg(target_os = "linux")]
    {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: arch_prctl with these arguments only changes which state components
        // this process may use; it reads and writes no memory of ours.
        let r = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        r == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Whether AMX-BF16 runs here.
pub fn bf16() -> bool {
    support().0
}

/// Whether AMX-INT8 runs here.
pub fn int8() -> bool {
    support().1
}

/// The tile configuration: palette 1, eight tiles of 16 rows x 64 bytes.
#[repr(C, align(64))]
struct Config([u8; 64]);

static CONFIG: Config = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = STEP_BYTES as u8;
        c[48 + t] = TILE_ROWS as u8;
        t += 1;
    }
    Config(c)
};

/// Loads the tile configuration on this thread. The driver calls it at the start of
/// every task (about 130 ns), not once per thread: other code in the process (oneDNN
/// under PyTorch, say) may configure or release the tiles between two products on the
/// same thread, and a stale configuration would give wrong shapes or a fault.
///
/// # Safety
/// [`bf16`] or [`int8`] returned true (the OS granted the tile state).
pub unsafe fn configure() {
    asm!("ldtilecfg [{0}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
}

/// The two dot-product instructions, one per dtype.
#[derive(Clone, Copy)]
pub enum Op {
    /// `tdpbf16ps`: f32 += bf16 pairs.
    Bf16,
    /// `tdpbusd`: i32 += u8 x s8 quads.
    Int8,
}

/// The k loops of one call, for the instruction `$op`, as inline assembly (tile numbers
/// must be literals). With one row tile: A in tmm6, the three B tiles in tmm7, tmm3 and
/// tmm4, C in tmm0..tmm2. With two, in two passes so that each k-step loads every
/// operand once: columns 0..32 as 2 x 2 tiles (A in tmm4, tmm5, B in tmm6, tmm7, C in
/// tmm0..tmm3), then columns 32..48 as 2 x 1 (C in tmm0, tmm2); 7 tile loads per 6
/// products instead of 9 with B loaded once and A reloaded (tile loads, not products,
/// bound these kernels).
macro_rules! kernel {
    ($op:literal, $a:expr, $lda:expr, $b:expr, $steps:expr, $two:expr, $c:expr) => {{
        let (a, lda, b, steps, c): (*const u8, usize, *const u8, usize, *mut u8) =
            ($a, $lda, $b, $steps, $c);
        let (bs, ldc) = (NR * 4, NR * 4);
        // Only read with two row tiles (then inside `a`); C's lower row tiles likewise.
        let a1 = a.wrapping_add(TILE_ROWS * lda);
        let c1 = c.wrapping_add(TILE_ROWS * ldc);
        if !$two {
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", options(nostack, nomem));
            for s in 0..steps {
                asm!(
                    "tileloadd tmm6, [{a} + {lda}]",
                    "tileloadd tmm7, [{b} + {bs}]",
                    "tileloadd tmm3, [{b} + {bs} + 64]",
                    "tileloadd tmm4, [{b} + {bs} + 128]",
                    concat!($op, " tmm0, tmm6, tmm7"),
                    concat!($op, " tmm1, tmm6, tmm3"),
                    concat!($op, " tmm2, tmm6, tmm4"),
                    a = in(reg) a.add(s * STEP_BYTES),
                    lda = in(reg) lda,
                    b = in(reg) b.add(s * PANEL_STEP),
                    bs = in(reg) bs,
                    options(nostack, readonly),
                );
            }
            asm!(
                "tilestored [{c} + {ldc}], tmm0",
                "tilestored [{c} + {ldc} + 64], tmm1",
                "tilestored [{c} + {ldc} + 128], tmm2",
                c = in(reg) c,
                ldc = in(reg) ldc,
                options(nostack)
            );
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            for s in 0..steps {
                asm!(
                    "tileloadd tmm4, [{a0} + {lda}]",
                    "tileloadd tmm6, [{b} + {bs}]",
                    "tileloadd tmm7, [{b} + {bs} + 64]",
                    "tileloadd tmm5, [{a1} + {lda}]",
                    concat!($op, " tmm0, tmm4, tmm6"),
                    concat!($op, " tmm1, tmm4, tmm7"),
                    concat!($op, " tmm2, tmm5, tmm6"),
                    concat!($op, " tmm3, tmm5, tmm7"),
                    a0 = in(reg) a.add(s * STEP_BYTES),
                    a1 = in(reg) a1.wrapping_add(s * STEP_BYTES),
                    lda = in(reg) lda,
                    b = in(reg) b.add(s * PANEL_STEP),
                    bs = in(reg) bs,
                    options(nostack, readonly),
                );
            }
            asm!(
                "tilestored [{c0} + {ldc}], tmm0",
                "tilestored [{c0} + {ldc} + 64], tmm1",
                "tilestored [{c1} + {ldc}], tmm2",
                "tilestored [{c1} + {ldc} + 64], tmm3",
                "tilezero tmm0",
                "tilezero tmm2",
                c0 = in(reg) c,
                c1 = in(reg) c1,
                ldc = in(reg) ldc,
                options(nostack)
            );
            for s in 0..steps {
                asm!(
                    "tileloadd tmm6, [{b} + {bs} + 128]",
                    "tileloadd tmm4, [{a0} + {lda}]",
                    "tileloadd tmm5, [{a1} + {lda}]",
                    concat!($op, " tmm0, tmm4, tmm6"),
                    concat!($op, " tmm2, tmm5, tmm6"),
                    a0 = in(reg) a.add(s * STEP_BYTES),
                    a1 = in(reg) a1.wrapping_add(s * STEP_BYTES),
                    lda = in(reg) lda,
                    b = in(reg) b.add(s * PANEL_STEP),
                    bs = in(reg) bs,
                    options(nostack, readonly),
                );
            }
            asm!(
                "tilestored [{c0} + {ldc} + 128], tmm0",
                "tilestored [{c1} + {ldc} + 128], tmm2",
                c0 = in(reg) c,
                c1 = in(reg) c1,
                ldc = in(reg) ldc,
                options(nostack)
            );
        }
    }};
}

/// C = A · B over `steps` k-steps into `acc`: its first 16 rows when `rows <= 16`, else
/// all [`MR`] (the rest is not written).
///
/// # Safety
/// The CPU runs `op` ([`bf16`] / [`int8`]) and [`configure`] ran on this thread with no
/// other code's tile instructions since; `a` is readable for 16 (or, with
/// `rows > 16`, [`MR`]) rows of `lda` bytes from which `steps` * 64 bytes are read;
/// `b` is a panel slice readable for `steps` k-steps of [`PANEL_STEP`] bytes; `acc` is
/// writable.
#[allow(clippy::too_many_arguments)]
pub unsafe fn product(
    op: Op,
    a: *const u8,
    lda: usize,
    b: *const u8,
    steps: usize,
    rows: usize,
    acc: *mut Acc,
) {
    let (two, c) = (rows > TILE_ROWS, acc.cast::<u8>());
    match op {
        Op::Bf16 => kernel!("tdpbf16ps", a, lda, b, steps, two, c),
        Op::Int8 => kernel!("tdpbusd", a, lda, b, steps, two, c),
    }
}
