//! Backends execute plans; they implement ops, never the network.

pub mod cpu;
pub mod cuda;
mod dtype;

pub use dtype::Dtype;

use std::fmt;
use std::str::FromStr;

use crate::batch::Batch;
use crate::cache::{CacheLayout, CacheState, KvCache};
use crate::error::{Error, Result};
use crate::graph::{Plan, Planner};
use crate::tensor::Tensor;
use crate::weights::ParamStore;

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU backend (f32, bf16 or int8 linears).
    #[default]
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl FromStr for Device {
    type Err = Error;

    /// Parses `cpu`, `cuda` or `cuda:N`.
    fn from_str(s: &str) -> Result<Device> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| {
                    Error::Unsupported(format!(
                        "unknown device {s:?}; expected cpu, cuda or cuda:N"
                    ))
                }),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Where and in which precision a model runs. A [`Device`] converts into the target
/// with that device's default dtype (f32 on the CPU, f16 on CUDA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Target {
    /// The device.
    pub device: Device,
    /// The storage type; None for the device's default.
    pub dtype: Option<Dtype>,
}

impl Target {
    /// `device` in `dtype` (None: the device's default).
    pub fn new(device: Device, dtype: Option<Dtype>) -> Self {
        Target { device, dtype }
    }

    /// The dtype this target runs in.
    pub fn dtype(&self) -> Dtype {
        self.dtype.unwrap_or(match self.device {
            Device::Cpu => Dtype::F32,
            Device::Cuda(_) => Dtype::F16,
        })
    }
}

impl From<Device> for Target {
    fn from(device: Device) -> Self {
        Target::new(device, None)
    }
}

/// One forward call as a backend receives it.
pub struct Call<'a> {
    /// The plan for the batch's shape.
    pub plan: &'a Plan,
    /// Plans the same head and options at other shapes, for a backend that splits a
    /// call (the CPU's throughput mode runs slices of the batch, each with its plan).
    pub planner: &'a dyn Planner,
    /// The loaded parameters.
    pub params: &'a ParamStore,
    /// The inputs.
    pub batch: &'a Batch,
    /// The key/value cache attention reads and extends, if any (made by this backend's
    /// [`Backend::new_cache`]).
    pub cache: Option<&'a mut KvCache>,
}

/// Runs plans on one device. A backend owns its scheduling (how a call is split over
/// threads or streams) and its state (working memory, prepared weights, cache storage).
pub trait Backend: Send + Sync {
    /// The device this backend drives.
    fn device(&self) -> Device;

    /// The storage type of weights and activations.
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    /// Called once with the loaded parameters, before any `execute` (a GPU backend
    /// uploads them here, so a model that does not fit fails at load).
    fn prepare(&self, _params: &ParamStore) -> Result<()> {
        Ok(())
    }

    /// Sets aside memory for `plan` (the largest shape a caller will run), so later
    /// calls up to that size allocate nothing; a backend that prepares weights lazily
    /// (the CPU's packed linears) prepares `plan`'s here.
    fn reserve(&self, _plan: &Plan, _params: &ParamStore) -> Result<()> {
        Ok(())
    }

    /// Storage for a key/value cache of `layout`, allocated now so that decoding
    /// allocates nothing per step.
    fn new_cache(&self, _layout: &CacheLayout) -> Result<CacheState> {
        Err(Error::Unsupported(
            "this backend has no key/value cache".into(),
        ))
    }

    /// Executes a call and returns the plan's outputs in declaration order. With a
    /// cache, attention reads and extends it.
    fn execute(&self, call: Call<'_>) -> Result<Vec<Tensor>>;
}

/// A shared backend (its owner keeps a handle, to read its counters for instance).
impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    fn device(&self) -> Device {
        (**self).device()
    }

    fn dtype(&self) -> Dtype {
        (**self).dtype()
    }

    fn prepare(&self, params: &ParamStore) -> Result<()> {
        (**self).prepare(params)
    }

    fn reserve(&self, plan: &Plan, params: &ParamStore) -> Result<()> {
        (**self).reserve(plan, params)
    }

    fn new_cache(&self, layout: &CacheLayout) -> Result<CacheState> {
        (**self).new_cache(layout)
    }

    fn execute(&self, call: Call<'_>) -> Result<Vec<Tensor>> {
        (**self).execute(call)
    }
}

/// The backend for `target`.
pub fn create(target: impl Into<Target>) -> Result<Box<dyn Backend>> {
    let target = target.into();
    match (target.device, target.dtype()) {
        (Device::Cpu, dtype @ (Dtype::F32 | Dtype::Bf16 | Dtype::Int8)) => {
            Ok(Box::new(cpu::CpuBackend::new(dtype)))
        }
        (Device::Cpu, other) => Err(Error::Unsupported(format!(
            "dtype {other} is not available on the CPU; use f32, bf16 or int8"
        ))),
        // The CUDA kernels exist in f32 and f16 only; bf16 and int8 are CPU paths for now.
        (Device::Cuda(_), dtype @ (Dtype::Bf16 | Dtype::Int8)) => Err(Error::Unsupported(format!(
            "dtype {dtype} is only available on the CPU for now; use f16 or f32 on CUDA"
        ))),
        (Device::Cuda(n), dtype) => cuda_backend(n, dtype),
    }
}

#[cfg(feature = "cuda")]
fn cuda_backend(ordinal: usize, dtype: Dtype) -> Result<Box<dyn Backend>> {
    let gpu = cuda::CudaGpu::new(ordinal)?;
    Ok(Box::new(cuda::GpuBackend::new(
        gpu,
        Device::Cuda(ordinal),
        dtype,
    )))
}

#[cfg(not(feature = "cuda"))]
fn cuda_backend(_ordinal: usize, _dtype: Dtype) -> Result<Box<dyn Backend>> {
    Err(Error::Unsupported(
        "this build of bertrt has no CUDA backend: rebuild with `--features cuda` \
         (it needs nvcc; see the README), or use --device cpu"
            .into(),
    ))
}
