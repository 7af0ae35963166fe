//! bertrt: a BERT inference engine.
//!
//! Load a Hugging Face BERT checkpoint, pick a head, run batches, read outputs by their
//! transformers names. The network is described once ([`model`]), lowered to a plan of
//! ops ([`graph`]) and executed by a backend ([`backend`]); the CPU backend computes in
//! f32 and is the reference for every other.
//!
//! ```no_run
//! use bertrt::{Batch, Device, ForwardOptions, Head, Model};
//!
//! let model = Model::load("path/to/bert".as_ref(), Some(Head::MaskedLm), Device::Cpu)?;
//! let batch = Batch::new(vec![vec![101, 103, 102]])?;
//! let out = model.forward(&batch, ForwardOptions::default())?;
//! println!("{:?}", out.get("logits").map(|t| t.shape().to_vec()));
//! # Ok::<(), bertrt::Error>(())
//! ```

#![warn(missing_docs)]

pub mod backend;
pub mod batch;
pub mod cache;
pub mod config;
pub mod convert;
pub mod error;
pub mod fetch;
pub mod graph;
pub mod lines;
pub mod model;
pub mod pipelines;
pub mod queue;
pub mod raw;
#[cfg(feature = "serve")]
pub mod serve;
pub mod synthetic;
pub mod tensor;
pub mod tokenizer;
pub mod weights;

pub use backend::{Device, Dtype, Target};
pub use batch::Batch;
pub use cache::KvCache;
pub use config::BertConfig;
pub use error::{Error, Result};
pub use model::{ForwardOptions, Head, Model, Outputs};
pub use tensor::Tensor;
