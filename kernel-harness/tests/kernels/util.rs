//! Helpers shared by the kernel tests.

use kernel_harness::{launches, Elem};

/// Runs `f`, which must launch entry point `name` at least once.
pub fn expect_launch<R>(name: &str, f: impl FnOnce() -> R) -> R {
    let before = launches(name).unwrap_or_else(|| panic!("no kernel named {name}"));
    let r = f();
    let after = launches(name).unwrap_or(0);
    assert!(after > before, "{name} was not launched");
    r
}

/// The entry point of family `base` for storage type E.
pub fn entry<E: Elem>(base: &str) -> String {
    format!("{base}_{}", E::SUFFIX)
}

/// Checks kernel output (in E) against an f32 reference with E's tolerance.
pub fn check<E: Elem>(what: &str, got: &[E], want: &[f32]) {
    let got: Vec<f32> = got.iter().map(|v| v.to_f32()).collect();
    kernel_harness::assert_close(
        &format!("{what} [{}]", E::SUFFIX),
        &got,
        want,
        E::ATOL,
        E::RTOL,
    );
}
