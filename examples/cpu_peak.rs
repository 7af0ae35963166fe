//! This machine's arithmetic peaks, the floors that tools/compare_cpu.py prints beside each
//! timing: f32 FMA, bf16 dot products (`vdpbf16ps`) and u8 x i8 dot products (`vpdpbusd`),
//! each as a loop of independent register accumulators on every thread at once, and
//! where the CPU has AMX, its tile products (`tdpbf16ps`, `tdpbusd`) on six independent
//! C tiles (operands already in tiles: the arithmetic alone, no loads).
//!
//!     cargo run --release --example cpu_peak -- THREADS
//!
//! Prints one JSON object: giga-operations per second for each kind the CPU has (a
//! multiply and an add count as two), e.g.
//! `{"threads":2,"f32_fma":…,"bf16_dot":…,"int8_dot":…,"amx_bf16":…,"amx_int8":…}`. A
//! kind the CPU (or OS) lacks is null.

use std::time::Instant;

/// Loop trips per measurement; each trip is ACC independent vector instructions.
const TRIPS: u64 = 20_000_000;
/// Independent accumulators: enough to cover the instruction latency (4-5 cycles) twice
/// over on two pipes.
const ACC: usize = 12;

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1)
        .max(1);
    let kinds: [(&str, Option<Kernel>); 5] = [
        ("f32_fma", kernel_f32()),
        ("bf16_dot", kernel_bf16()),
        ("int8_dot", kernel_int8()),
        ("amx_bf16", kernel_amx(false)),
        ("amx_int8", kernel_amx(true)),
    ];
    let mut fields = vec![format!("\"threads\":{threads}")];
    for (name, kernel) in kinds {
        let value = kernel.map_or("null".to_string(), |k| {
            format!("{:.1}", measure(k, threads))
        });
        fields.push(format!("\"{name}\":{value}"));
    }
    println!("{{{}}}", fields.join(","));
}

/// A measurement loop, the operations one instruction of it performs, its instructions
/// per trip and how many trips to time.
#[derive(Clone, Copy)]
struct Kernel {
    run: fn(u64) -> f32,
    ops_per_instruction: f64,
    per_trip: usize,
    trips: u64,
}

impl Kernel {
    /// A vector kernel: ACC instructions a trip, TRIPS trips.
    fn vector(run: fn(u64) -> f32, ops_per_instruction: f64) -> Kernel {
        Kernel {
            run,
            ops_per_instruction,
            per_trip: ACC,
            trips: TRIPS,
        }
    }
}

/// Best of three: giga-operations per second over every thread together.
fn measure(kernel: Kernel, threads: usize) -> f64 {
    (kernel.run)(kernel.trips / 20); // warm up clocks and caches
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| std::hint::black_box((kernel.run)(kernel.trips)));
            }
        });
        best = best.min(start.elapsed().as_secs_f64());
    }
    let instructions = (kernel.trips * kernel.per_trip as u64 * threads as u64) as f64;
    instructions * kernel.ops_per_instruction / best / 1e9
}

#[cfg(target_arch = "x86_64")]
fn kernel_f32() -> Option<Kernel> {
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present (checked above).
        return Some(Kernel::vector(|n| unsafe { x86::fma512(n) }, 32.0));
    }
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: AVX and FMA are present (checked above).
        return Some(Kernel::vector(|n| unsafe { x86::fma256(n) }, 16.0));
    }
    None
}

#[cfg(target_arch = "x86_64")]
fn kernel_bf16() -> Option<Kernel> {
    let ok = std::arch::is_x86_feature_detected!("avx512bf16");
    // SAFETY: AVX-512F and AVX512-BF16 are present (checked above).
    ok.then_some(Kernel::vector(|n| unsafe { x86::bf16_512(n) }, 64.0))
}

#[cfg(target_arch = "x86_64")]
fn kernel_int8() -> Option<Kernel> {
    let ok = std::arch::is_x86_feature_detected!("avx512vnni");
    // SAFETY: AVX-512F and AVX512-VNNI are present (checked above).
    ok.then_some(Kernel::vector(|n| unsafe { x86::vnni512(n) }, 128.0))
}

/// AMX tile products: `int8` picks `tdpbusd` (16 x 16 x 64 multiply-adds) over
/// `tdpbf16ps` (16 x 16 x 32); None without AMX or the OS's permission.
#[cfg(target_arch = "x86_64")]
fn kernel_amx(int8: bool) -> Option<Kernel> {
    // The library's detection (CPUID, then the tile-state request to Linux).
    let ok = match int8 {
        true => bertrt::backend::cpu::gemm::Path::Amx.int8_supported(),
        false => bertrt::backend::cpu::gemm::Path::Amx.bf16_supported(),
    };
    let run: fn(u64) -> f32 = match int8 {
        // SAFETY: AMX-INT8 runs and the OS granted the tile state (checked above).
        true => |n| unsafe { x86::amx(n, true) },
        // SAFETY: AMX-BF16 runs and the OS granted the tile state (checked above).
        false => |n| unsafe { x86::amx(n, false) },
    };
    ok.then_some(Kernel {
        run,
        ops_per_instruction: if int8 { 32768.0 } else { 16384.0 },
        per_trip: 6,
        trips: TRIPS / 200,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn kernel_f32() -> Option<Kernel> {
    None
}

#[cfg(not(target_arch = "x86_64"))]
fn kernel_bf16() -> Option<Kernel> {
    None
}

#[cfg(not(target_arch = "x86_64"))]
fn kernel_int8() -> Option<Kernel> {
    None
}

#[cfg(not(target_arch = "x86_64"))]
fn kernel_amx(_int8: bool) -> Option<Kernel> {
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::ACC;

    /// Sums the accumulators' lanes, so that no instruction of the loop is dead.
    unsafe fn fold512(acc: [__m512; ACC]) -> f32 {
        acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma512(trips: u64) -> f32 {
        let x = _mm512_set1_ps(std::hint::black_box(1.000_001));
        let y = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let mut acc = [_mm512_setzero_ps(); ACC];
        for _ in 0..trips {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, x, y);
            }
        }
        fold512(acc)
    }

    #[target_feature(enable = "avx,fma")]
    pub unsafe fn fma256(trips: u64) -> f32 {
        let x = _mm256_set1_ps(std::hint::black_box(1.000_001));
        let y = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let mut acc = [_mm256_setzero_ps(); ACC];
        for _ in 0..trips {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, x, y);
            }
        }
        let mut lanes = [0f32; 8];
        let mut sum = 0.0;
        for a in acc {
            _mm256_storeu_ps(lanes.as_mut_ptr(), a);
            sum += lanes.iter().sum::<f32>();
        }
        sum
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn bf16_512(trips: u64) -> f32 {
        let bits = _mm512_set1_epi16(std::hint::black_box(0x3f80)); // 1.0 in bf16
                                                                    // SAFETY (transmute): __m512i and __m512bh are both 64 bytes of plain lanes.
        let x = std::mem::transmute::<__m512i, __m512bh>(bits);
        let mut acc = [_mm512_setzero_ps(); ACC];
        for _ in 0..trips {
            for a in acc.iter_mut() {
                *a = _mm512_dpbf16_ps(*a, x, x);
            }
        }
        fold512(acc)
    }

    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn vnni512(trips: u64) -> f32 {
        let x = _mm512_set1_epi8(std::hint::black_box(1));
        let mut acc = [_mm512_setzero_si512(); ACC];
        for _ in 0..trips {
            for a in acc.iter_mut() {
                *a = _mm512_dpbusd_epi32(*a, x, x);
            }
        }
        acc.iter().map(|&v| _mm512_reduce_add_epi32(v) as f32).sum()
    }

    /// Six independent tile products a trip on tiles 0..5 from tiles 6 and 7 (whatever
    /// they hold: the time does not depend on the values).
    ///
    /// # Safety
    /// The CPU runs the instruction and the OS granted the tile state.
    pub unsafe fn amx(trips: u64, int8: bool) -> f32 {
        use std::arch::asm;
        let mut config = [0u8; 64];
        config[0] = 1;
        for t in 0..8 {
            config[16 + 2 * t] = 64;
            config[48 + t] = 16;
        }
        asm!("ldtilecfg [{0}]", in(reg) config.as_ptr(), options(nostack, readonly));
        for _ in 0..trips {
            match int8 {
                true => asm!(
                    "tdpbusd tmm0, tmm6, tmm7",
                    "tdpbusd tmm1, tmm6, tmm7",
                    "tdpbusd tmm2, tmm6, tmm7",
                    "tdpbusd tmm3, tmm6, tmm7",
                    "tdpbusd tmm4, tmm6, tmm7",
                    "tdpbusd tmm5, tmm6, tmm7",
                    options(nostack, nomem)
                ),
                false => asm!(
                    "tdpbf16ps tmm0, tmm6, tmm7",
                    "tdpbf16ps tmm1, tmm6, tmm7",
                    "tdpbf16ps tmm2, tmm6, tmm7",
                    "tdpbf16ps tmm3, tmm6, tmm7",
                    "tdpbf16ps tmm4, tmm6, tmm7",
                    "tdpbf16ps tmm5, tmm6, tmm7",
                    options(nostack, nomem)
                ),
            }
        }
        asm!("tilerelease", options(nostack, nomem));
        0.0
    }
}
