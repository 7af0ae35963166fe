//! [`CudaGpu`]: the [`Gpu`] trait on a real device, through cudarc with dynamic loading.
//!
//! Nothing CUDA is linked: the driver (libcuda) and cuBLAS are opened when a CUDA model
//! is created, so the same binary runs on machines without them and `--device cuda`
//! then fails with an error instead of a crash (cudarc panics inside cuInit without a
//! driver, so its presence is checked first). Libraries are found on the loader's path,
//! or in the folders named by `BERTRT_CUDA_LIB_DIR` (colon-separated; e.g. the `lib`
//! folders of the pip wheels), which are loaded by absolute path first.

use std::collections::HashMap;
use std::ffi::c_void;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cudarc::cublas::sys as blas;
use cudarc::driver::{result, sys, CudaContext, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;

use super::gpu::{DevPtr, Dtype, Gemm, Geometry, Gpu};
use super::ops::KERNELS;
use super::KERNELS_FATBIN;
use crate::error::{Error, Result};

/// Names the folders searched for CUDA libraries before the loader's path.
pub const LIB_DIR_ENV: &str = "BERTRT_CUDA_LIB_DIR";

/// Libraries preloaded from `BERTRT_CUDA_LIB_DIR`, in dependency order.
const PRELOAD: [&str; 3] = ["libcublasLt.so.13", "libcublas.so.13", "libcuda.so.1"];

/// cuBLAS workspace, given explicitly so that captured graphs never allocate.
const BLAS_WORKSPACE: usize = 32 << 20;

/// Dynamic shared memory a block gets without opting in.
const DEFAULT_SMEM: usize = 48 * 1024;

/// One CUDA device: a context, one stream, the kernels module and a cuBLAS handle.
pub struct CudaGpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    module: Arc<CudaModule>,
    blas: blas::cublasHandle_t,
    _workspace: CudaMem,
    /// Entry points loaded so far, with the dynamic shared memory each may use.
    functions: Mutex<HashMap<String, (sys::CUfunction, usize)>>,
    name: String,
}

// SAFETY: the raw handles (functions, the cuBLAS handle) belong to this context, are
// only used after binding it to the calling thread, and the backend serialises all use
// of a device behind its mutex.
unsafe impl Send for CudaGpu {}
// SAFETY: as above.
unsafe impl Sync for CudaGpu {}

/// Device memory from cuMemAlloc, freed on drop.
pub struct CudaMem {
    ptr: sys::CUdeviceptr,
    ctx: Arc<CudaContext>,
}

impl Drop for CudaMem {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: allocated by malloc_sync in this context and freed once.
            let _ = unsafe { result::free_sync(self.ptr) };
        }
    }
}

/// A captured graph.
pub struct CudaGraph(cudarc::driver::CudaGraph);

// SAFETY: graphs are only touched under the backend's mutex, one thread at a time.
unsafe impl Send for CudaGraph {}

fn cuda_err(what: &str) -> impl Fn(result::DriverError) -> Error + '_ {
    move |e| Error::Cuda(format!("{what}: {e:?}"))
}

fn blas_err(what: &str) -> impl Fn(cudarc::cublas::result::CublasError) -> Error + '_ {
    move |e| Error::Cuda(format!("{what}: {e:?}"))
}

/// Loads the libraries found in `BERTRT_CUDA_LIB_DIR` by absolute path, globally, so
/// that cudarc's later loads by name find them.
fn preload_from_env() -> Result<()> {
    let Some(dirs) = std::env::var_os(LIB_DIR_ENV) else {
        return Ok(());
    };
    for dir in std::env::split_paths(&dirs) {
        if !dir.is_dir() {
            return Err(Error::Unsupported(format!(
                "{LIB_DIR_ENV}: {} is not a folder",
                dir.display()
            )));
        }
        for name in PRELOAD {
            let path = dir.join(name);
            if path.is_file() {
                preload(&path)?;
            }
        }
    }
    Ok(())
}

fn preload(path: &Path) -> Result<()> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: loading a CUDA library runs its initialisers, which have no preconditions.
    let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }
        .map_err(|e| Error::Unsupported(format!("{}: {e}", path.display())))?;
    // Kept loaded for the life of the process, as cudarc keeps its own handles.
    std::mem::forget(lib);
    Ok(())
}

fn missing(what: &str) -> Error {
    Error::Unsupported(format!(
        "CUDA is not available: {what} was not found. Install the NVIDIA driver and CUDA \
         13 libraries (or name the folders holding libcublas.so.13 in {LIB_DIR_ENV}), or \
         use --device cpu"
    ))
}

impl CudaGpu {
    /// Opens device `ordinal`: checks for the driver and cuBLAS, creates the context and
    /// stream, loads the kernels and a cuBLAS handle.
    pub fn new(ordinal: usize) -> Result<CudaGpu> {
        preload_from_env()?;
        // SAFETY: only tries to open the libraries.
        if !unsafe { sys::is_culib_present() } {
            return Err(missing("the CUDA driver library (libcuda.so)"));
        }
        // SAFETY: as above.
        if !unsafe { blas::is_culib_present() } {
            return Err(missing("cuBLAS (libcublas.so.13)"));
        }
        let ctx = std::panic::catch_unwind(|| CudaContext::new(ordinal))
            .map_err(|_| missing("a usable CUDA driver"))?
            .map_err(|e| Error::Unsupported(format!("CUDA device {ordinal}: {e:?}")))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let stream = ctx.new_stream().map_err(cuda_err("creating a stream"))?;
        let module = ctx
            .load_module(Ptx::from_binary(KERNELS_FATBIN.to_vec()))
            .map_err(cuda_err("loading the kernels (is the GPU sm_80 or newer?)"))?;
        // SAFETY: the context is bound to this thread (load_module did so).
        let workspace = CudaMem {
            ptr: unsafe { result::malloc_sync(BLAS_WORKSPACE) }
                .map_err(cuda_err("allocating the cuBLAS workspace"))?,
            ctx: ctx.clone(),
        };
        let handle = cudarc::cublas::result::create_handle().map_err(blas_err("cuBLAS"))?;
        // SAFETY: a fresh handle, this context's stream and a workspace of that size.
        unsafe {
            cudarc::cublas::result::set_stream(handle, stream.cu_stream() as _)
                .map_err(blas_err("cuBLAS stream"))?;
            blas::cublasSetWorkspace_v2(handle, workspace.ptr as *mut c_void, BLAS_WORKSPACE)
                .result()
                .map_err(blas_err("cuBLAS workspace"))?;
        }
        let gpu = CudaGpu {
            ctx,
            stream,
            module,
            blas: handle,
            _workspace: workspace,
            functions: Mutex::new(HashMap::new()),
            name: format!("{name} (cuda:{ordinal})"),
        };
        // Every entry point now (fails here, not at the first forward, if the fatbin has
        // no code for this GPU), each allowed the most shared memory its kernel may ask
        // for, so that nothing but launches happens while a graph is being captured.
        for kernel in KERNELS {
            for &(_, name) in kernel.entries {
                gpu.function(name, kernel.max_smem)?;
            }
        }
        Ok(gpu)
    }

    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(cuda_err("binding the context"))
    }

    /// The entry point `name`, allowed `smem` bytes of dynamic shared memory.
    fn function(&self, name: &str, smem: usize) -> Result<sys::CUfunction> {
        let mut fns = self
            .functions
            .lock()
            .map_err(|_| Error::Cuda("kernel table poisoned".into()))?;
        let entry = match fns.get(name) {
            Some(&e) => e,
            None => {
                let f = self
                    .module
                    .load_function(name)
                    .map_err(cuda_err(&format!("kernel {name}")))?;
                let e = (f.cu_function(), DEFAULT_SMEM);
                fns.insert(name.to_string(), e);
                e
            }
        };
        if smem > entry.1 {
            // SAFETY: a function of this context; the attribute only raises a limit.
            unsafe {
                result::function::set_function_attribute(
                    entry.0,
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    smem as i32,
                )
            }
            .map_err(cuda_err(&format!("{name}: {smem} bytes of shared memory")))?;
            fns.insert(name.to_string(), (entry.0, smem));
        }
        Ok(entry.0)
    }
}

impl Drop for CudaGpu {
    fn drop(&mut self) {
        if self.bind().is_ok() {
            // SAFETY: created in `new` and destroyed once.
            let _ = unsafe { cudarc::cublas::result::destroy_handle(self.blas) };
        }
    }
}

impl Gpu for CudaGpu {
    type Mem = CudaMem;
    type Graph = CudaGraph;

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn alloc(&self, bytes: usize) -> Result<CudaMem> {
        self.bind()?;
        // SAFETY: the context is bound.
        let ptr = unsafe { result::malloc_sync(bytes.max(1)) }
            .map_err(cuda_err(&format!("allocating {bytes} bytes")))?;
        Ok(CudaMem {
            ptr,
            ctx: self.ctx.clone(),
        })
    }

    fn address(mem: &CudaMem) -> DevPtr {
        mem.ptr
    }

    unsafe fn upload(&self, dst: DevPtr, src: &[u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller guarantees the destination; pageable sources are staged
        // before the call returns.
        unsafe { result::memcpy_htod_async(dst, src, self.stream.cu_stream()) }
            .map_err(cuda_err("copy to the device"))
    }

    unsafe fn download(&self, src: DevPtr, dst: &mut [u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: the caller guarantees the source; the stream is synchronised before
        // dst is read.
        unsafe { result::memcpy_dtoh_async(dst, src, self.stream.cu_stream()) }
            .map_err(cuda_err("copy from the device"))?;
        self.synchronize()
    }

    unsafe fn launch(
        &self,
        kernel: &str,
        g: Geometry,
        args: *const c_void,
        _args_size: usize,
    ) -> Result<()> {
        self.bind()?;
        let f = self.function(kernel, g.smem)?;
        let mut params = [args as *mut c_void];
        // SAFETY: one parameter, the argument struct, read by the driver during the call;
        // the caller vouches for the addresses inside it.
        unsafe {
            result::launch_kernel(
                f,
                (g.grid[0], g.grid[1], g.grid[2]),
                (g.block[0], g.block[1], g.block[2]),
                g.smem as u32,
                self.stream.cu_stream(),
                &mut params,
            )
        }
        .map_err(cuda_err(kernel))
    }

    unsafe fn gemm(&self, g: &Gemm) -> Result<()> {
        self.bind()?;
        let ty = match g.dtype {
            Dtype::F32 => blas::cudaDataType::CUDA_R_32F,
            Dtype::F16 => blas::cudaDataType::CUDA_R_16F,
            Dtype::Bf16 | Dtype::Int8 => {
                return Err(Error::Unsupported(format!(
                    "dtype {} has no CUDA GEMM; it is CPU-only for now",
                    g.dtype
                )))
            }
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        let dim = |v: usize| {
            i32::try_from(v).map_err(|_| Error::Cuda(format!("GEMM dimension {v} too large")))
        };
        // cuBLAS is column-major: row-major out[m, n] is column-major C[n, m], and
        // C = op(A) · B with A = w read as a column-major [k, n] matrix (transposed to
        // [n, k]) and B = x read as a column-major [k, m] matrix.
        // SAFETY: the caller guarantees the matrices; alpha and beta are host scalars.
        unsafe {
            cudarc::cublas::result::gemm_ex(
                self.blas,
                blas::cublasOperation_t::CUBLAS_OP_T,
                blas::cublasOperation_t::CUBLAS_OP_N,
                dim(g.n)?,
                dim(g.m)?,
                dim(g.k)?,
                (&alpha as *const f32).cast(),
                g.w as *const c_void,
                ty,
                dim(g.k)?,
                g.x as *const c_void,
                ty,
                dim(g.k)?,
                (&beta as *const f32).cast(),
                g.out as *mut c_void,
                ty,
                dim(g.n)?,
                blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(blas_err(&format!("GEMM {}x{}x{}", g.m, g.n, g.k)))
    }

    fn synchronize(&self) -> Result<()> {
        self.bind()?;
        self.stream.synchronize().map_err(cuda_err("synchronize"))
    }

    fn begin_capture(&self) -> Result<bool> {
        self.bind()?;
        self.stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(cuda_err("begin graph capture"))?;
        Ok(true)
    }

    fn end_capture(&self) -> Result<CudaGraph> {
        self.bind()?;
        self.stream
            .end_capture(sys::CUgraphInstantiate_flags(0))
            .map_err(cuda_err("end graph capture"))?
            .map(CudaGraph)
            .ok_or_else(|| Error::Cuda("graph capture recorded nothing".into()))
    }

    fn replay(&self, graph: &CudaGraph) -> Result<()> {
        graph.0.launch().map_err(cuda_err("graph launch"))
    }
}
