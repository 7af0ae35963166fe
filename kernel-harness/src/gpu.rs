//! [`HostGpu`]: bertrt's `Gpu` trait over host memory and the host-compiled kernels, so
//! the CUDA backend itself (lowering, fusion, arena, packing, key/value caches) runs and
//! is checked on a machine without a GPU. GEMMs are plain f32-accumulating loops, as
//! cuBLAS computes them; graphs are not emulated (work runs as queued). Each device
//! records the entry points launched through it, so a test can tell which kernels a run
//! of the backend used.

use std::alloc::Layout;
use std::collections::BTreeSet;
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bertrt::backend::cuda::{DevPtr, Dtype, Gemm, Geometry, Gpu};
use bertrt::{Error, Result};
use half::f16;

extern "C" {
    fn bertrt_host_launch(
        name: *const c_char,
        grid: *const u32,
        block: *const u32,
        smem: usize,
        args: *const c_void,
        args_size: usize,
    ) -> i32;
}

/// The emulated device: memory is host memory; clones share the allocation count and
/// the record of launched entry points.
#[derive(Debug, Clone, Default)]
pub struct HostGpu {
    allocations: Arc<AtomicUsize>,
    launched: Arc<Mutex<BTreeSet<String>>>,
}

impl HostGpu {
    /// Allocations made through this device (and its clones) so far.
    pub fn allocations(&self) -> usize {
        self.allocations.load(Ordering::SeqCst)
    }

    /// Entry points launched through this device (and its clones) so far, sorted.
    pub fn launched(&self) -> Vec<String> {
        let launched = self.launched.lock().unwrap_or_else(|e| e.into_inner());
        launched.iter().cloned().collect()
    }

    fn record(&self, kernel: &str) {
        let mut launched = self.launched.lock().unwrap_or_else(|e| e.into_inner());
        if !launched.contains(kernel) {
            launched.insert(kernel.to_owned());
        }
    }
}

/// A zeroed, 256-byte aligned host allocation standing in for device memory.
#[derive(Debug)]
pub struct HostMem {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: the allocation is owned and only reached through raw addresses, as device
// memory is; the backend serialises its use.
unsafe impl Send for HostMem {}
// SAFETY: as above.
unsafe impl Sync for HostMem {}

impl Drop for HostMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `alloc` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

fn gemm_typed<T: Copy>(g: &Gemm, load: impl Fn(T) -> f32, store: impl Fn(f32) -> T) {
    let (m, n, k) = (g.m, g.n, g.k);
    // SAFETY: the backend guarantees the three matrices lie in live allocations.
    let (x, w, out) = unsafe {
        (
            std::slice::from_raw_parts(g.x as *const T, m * k),
            std::slice::from_raw_parts(g.w as *const T, n * k),
            std::slice::from_raw_parts_mut(g.out as *mut T, m * n),
        )
    };
    let wf: Vec<f32> = w.iter().map(|&v| load(v)).collect();
    let mut row = vec![0f32; k];
    for r in 0..m {
        for (dst, &v) in row.iter_mut().zip(&x[r * k..(r + 1) * k]) {
            *dst = load(v);
        }
        for c in 0..n {
            let acc: f32 = row
                .iter()
                .zip(&wf[c * k..(c + 1) * k])
                .map(|(a, b)| a * b)
                .sum();
            out[r * n + c] = store(acc);
        }
    }
}

impl Gpu for HostGpu {
    type Mem = HostMem;
    type Graph = ();

    fn describe(&self) -> String {
        "host emulation of the CUDA kernels".into()
    }

    fn alloc(&self, bytes: usize) -> Result<HostMem> {
        let layout = Layout::from_size_align(bytes.max(1), 256)
            .map_err(|e| Error::Cuda(format!("allocation of {bytes} bytes: {e}")))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        self.allocations.fetch_add(1, Ordering::SeqCst);
        if ptr.is_null() {
            return Err(Error::Cuda(format!("out of host memory ({bytes} bytes)")));
        }
        Ok(HostMem { ptr, layout })
    }

    fn address(mem: &HostMem) -> DevPtr {
        mem.ptr as DevPtr
    }

    unsafe fn upload(&self, dst: DevPtr, src: &[u8]) -> Result<()> {
        // SAFETY: the caller guarantees dst holds src.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    unsafe fn download(&self, src: DevPtr, dst: &mut [u8]) -> Result<()> {
        // SAFETY: the caller guarantees src holds dst.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    unsafe fn launch(
        &self,
        kernel: &str,
        g: Geometry,
        args: *const c_void,
        args_size: usize,
    ) -> Result<()> {
        let c_name = CString::new(kernel)
            .map_err(|_| Error::Cuda(format!("kernel name {kernel:?} has a NUL")))?;
        // SAFETY: the name and geometry arrays outlive the call; the caller vouches for
        // the addresses inside args.
        let rc = unsafe {
            bertrt_host_launch(
                c_name.as_ptr(),
                g.grid.as_ptr(),
                g.block.as_ptr(),
                g.smem,
                args,
                args_size,
            )
        };
        match rc {
            0 => {
                self.record(kernel);
                Ok(())
            }
            -1 => Err(Error::Cuda(format!(
                "no kernel named {kernel} (is its BERTRT_ENTRY line there?)"
            ))),
            -2 => Err(Error::Cuda(format!(
                "{kernel}: the Rust argument struct does not match the C++ one in size"
            ))),
            _ => Err(Error::Cuda(format!(
                "{kernel}: bad launch geometry {:?} x {:?}",
                g.grid, g.block
            ))),
        }
    }

    unsafe fn gemm(&self, g: &Gemm) -> Result<()> {
        match g.dtype {
            Dtype::F32 => gemm_typed::<f32>(g, |v| v, |v| v),
            Dtype::F16 => gemm_typed::<f16>(g, f16::to_f32, f16::from_f32),
            Dtype::Bf16 | Dtype::Int8 => {
                return Err(Error::Unsupported(format!(
                    "dtype {} has no CUDA GEMM; it is CPU-only for now",
                    g.dtype
                )))
            }
        }
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn begin_capture(&self) -> Result<bool> {
        Ok(false)
    }

    fn end_capture(&self) -> Result<()> {
        Err(Error::Cuda("the host emulation records no graphs".into()))
    }

    fn replay(&self, _graph: &()) -> Result<()> {
        Err(Error::Cuda("the host emulation records no graphs".into()))
    }
}
