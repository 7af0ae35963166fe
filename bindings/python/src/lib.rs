//! `bertrt._bertrt`: the engine behind the Python package. Thin on purpose: a loaded
//! checkpoint answers JSON lines for any task (what `bertrt run` answers) or embeddings
//! as a float32 array, and a raw model runs a head on token ids; the GIL is released
//! while the engine works. The Python API (`python/bertrt/`) is built on these.

use std::path::Path;
use std::sync::Arc;

use bertrt::pipelines::{EmbedOptions, Pipeline, Pooling, Task, TaskOptions, TextModel};
use bertrt::{Batch, Device, Dtype, Error, ForwardOptions, Head, Model, Target, Tensor};
use numpy::{PyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;

/// An engine error as the Python exception a caller expects.
fn py_err(e: Error) -> PyErr {
    match &e {
        Error::Input(_) | Error::Config { .. } => PyValueError::new_err(e.to_string()),
        Error::Unsupported(_) => PyValueError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

fn target(device: &str, dtype: Option<&str>) -> PyResult<Target> {
    let device: Device = device.parse().map_err(py_err)?;
    let dtype = dtype.map(str::parse::<Dtype>).transpose().map_err(py_err)?;
    Ok(Target::new(device, dtype))
}

/// A folder, packed file or Hub id (None: the default model), resolved; a local path
/// that does not exist is FileNotFoundError.
fn resolve(model: Option<&str>) -> PyResult<std::path::PathBuf> {
    if let Some(m) = model {
        let looks_local = m.starts_with('.') || m.starts_with('/') || m.matches('/').count() > 1;
        if looks_local && !Path::new(m).exists() {
            return Err(PyFileNotFoundError::new_err(format!("no model at {m}")));
        }
    }
    bertrt::fetch::resolve_model(model).map_err(py_err)
}

/// One loaded checkpoint (every head its weights hold, the tokenizer, the
/// sentence-transformers files).
#[pyclass(frozen)]
struct Engine {
    text: Arc<TextModel>,
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (model=None, device="cpu", dtype=None))]
    fn new(
        py: Python<'_>,
        model: Option<&str>,
        device: &str,
        dtype: Option<&str>,
    ) -> PyResult<Self> {
        let dir = resolve(model)?;
        let target = target(device, dtype)?;
        let text = py
            .allow_threads(|| TextModel::load(&dir, None, target))
            .map_err(|e| match &e {
                Error::Io { .. } => PyFileNotFoundError::new_err(e.to_string()),
                _ => py_err(e),
            })?;
        Ok(Engine {
            text: Arc::new(text),
        })
    }

    /// Answers `inputs` (JSON texts of `bertrt run` lines) with `task` and `options` (a
    /// JSON object of the task's options): per input, (true, answer JSON) or (false,
    /// error message). An error for the whole call (bad options, no head) raises.
    fn run(
        &self,
        py: Python<'_>,
        task: &str,
        options: &str,
        inputs: Vec<String>,
    ) -> PyResult<Vec<(bool, String)>> {
        let task: Task = task.parse().map_err(py_err)?;
        let options: Value = serde_json::from_str(options)
            .map_err(|e| PyValueError::new_err(format!("options are not JSON: {e}")))?;
        let (options, input) = TaskOptions::from_json(task, &options).map_err(py_err)?;
        let pipeline = Pipeline::new(self.text.clone(), options, input).map_err(py_err)?;
        py.allow_threads(|| {
            let mut values = Vec::with_capacity(inputs.len());
            let mut out: Vec<Option<(bool, String)>> = vec![None; inputs.len()];
            let mut places = Vec::new();
            for (i, line) in inputs.iter().enumerate() {
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => {
                        values.push(v);
                        places.push(i);
                    }
                    Err(e) => out[i] = Some((false, format!("not JSON: {e}"))),
                }
            }
            for (i, r) in places.into_iter().zip(pipeline.run(&values)) {
                out[i] = Some(match r {
                    Ok(a) => (true, a.into_json()),
                    Err(e) => (false, e.to_string()),
                });
            }
            Ok(out
                .into_iter()
                .map(|o| o.unwrap_or((false, "not answered".into())))
                .collect())
        })
    }

    /// Pooled embeddings of `texts` as a flat float32 array (n rows of the embedding's
    /// length; None options: the model's sentence-transformers files), or with
    /// `pooling="none"` each text's token states [tokens, hidden] as one flat array per
    /// text. The engine's numbers become numpy's without a copy or a JSON round trip.
    #[pyo3(signature = (texts, batch_size=32, normalize=None, pooling=None, dimensions=None))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        batch_size: usize,
        normalize: Option<bool>,
        pooling: Option<&str>,
        dimensions: Option<usize>,
    ) -> PyResult<Vec<Bound<'py, PyArray1<f32>>>> {
        let pooling = pooling
            .map(|p| serde_json::from_value::<Pooling>(Value::String(p.to_string())))
            .transpose()
            .map_err(|e| PyValueError::new_err(format!("pooling: {e}")))?;
        let per_token = pooling == Some(Pooling::None);
        let options = TaskOptions::Embed(EmbedOptions {
            pooling,
            normalize,
            dimensions,
        });
        let input = bertrt::pipelines::InputOptions {
            batch_size: Some(batch_size.max(1)),
            ..Default::default()
        };
        let pipeline = Pipeline::new(self.text.clone(), options, input).map_err(py_err)?;
        let arrays = py.allow_threads(|| {
            let lines: Vec<Value> = texts
                .iter()
                .map(|t| serde_json::json!({ "text": t }))
                .collect();
            let mut arrays: Vec<Vec<f32>> = Vec::new();
            for r in pipeline.run(&lines) {
                let numbers = r?.into_numbers().ok_or_else(|| {
                    Error::Internal("an embedding's answer has no numbers".into())
                })?;
                match arrays.last_mut() {
                    Some(flat) if !per_token => flat.extend_from_slice(&numbers),
                    _ => arrays.push(numbers),
                }
            }
            Ok::<_, Error>(arrays)
        });
        Ok(arrays
            .map_err(py_err)?
            .into_iter()
            .map(|a| PyArray1::from_vec(py, a))
            .collect())
    }

    /// The heads the checkpoint holds (transformers' class names).
    fn heads(&self) -> Vec<String> {
        self.text
            .model()
            .heads()
            .iter()
            .map(|h| h.class_name().to_string())
            .collect()
    }

    /// config.json as the engine read it, as JSON.
    fn config(&self) -> PyResult<String> {
        serde_json::to_string(self.text.model().config())
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }
}

/// A model for raw forwards on token ids.
#[pyclass(frozen)]
struct RawModel {
    model: Model,
}

fn rows(a: &PyReadonlyArray2<'_, i64>) -> Vec<Vec<i64>> {
    let view = a.as_array();
    view.rows().into_iter().map(|r| r.to_vec()).collect()
}

#[pymethods]
impl RawModel {
    #[new]
    #[pyo3(signature = (model=None, head=None, device="cpu", dtype=None))]
    fn new(
        py: Python<'_>,
        model: Option<&str>,
        head: Option<&str>,
        device: &str,
        dtype: Option<&str>,
    ) -> PyResult<Self> {
        let dir = resolve(model)?;
        let head = head.map(str::parse::<Head>).transpose().map_err(py_err)?;
        let target = target(device, dtype)?;
        let model = py
            .allow_threads(|| Model::load(&dir, head, target))
            .map_err(py_err)?;
        Ok(RawModel { model })
    }

    /// Runs the head; returns {name: (shape, flat float32 array)}.
    #[pyo3(signature = (input_ids, attention_mask=None, token_type_ids=None, head=None, output_hidden_states=false, output_attentions=false))]
    #[allow(clippy::too_many_arguments)]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        input_ids: PyReadonlyArray2<'py, i64>,
        attention_mask: Option<PyReadonlyArray2<'py, i64>>,
        token_type_ids: Option<PyReadonlyArray2<'py, i64>>,
        head: Option<&str>,
        output_hidden_states: bool,
        output_attentions: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        if input_ids.shape().contains(&0) {
            return Err(PyValueError::new_err("input_ids is empty"));
        }
        let mut batch = Batch::new(rows(&input_ids)).map_err(py_err)?;
        if let Some(m) = &attention_mask {
            batch = batch.with_attention_mask(rows(m)).map_err(py_err)?;
        }
        if let Some(t) = &token_type_ids {
            batch = batch.with_token_type_ids(rows(t)).map_err(py_err)?;
        }
        let opts = ForwardOptions {
            head: head.map(str::parse::<Head>).transpose().map_err(py_err)?,
            output_hidden_states,
            output_attentions,
        };
        let out = py
            .allow_threads(|| self.model.forward(&batch, opts))
            .map_err(py_err)?;
        let dict = PyDict::new(py);
        // Each tensor's storage becomes its numpy array's, without a copy.
        let array = |t: Tensor| (t.shape().to_vec(), PyArray1::from_vec(py, t.into_data()));
        for (name, t) in out.tensors {
            dict.set_item(name, array(t))?;
        }
        for (key, list) in [
            ("hidden_states", out.hidden_states),
            ("attentions", out.attentions),
        ] {
            if !list.is_empty() {
                let items: Vec<_> = list.into_iter().map(array).collect();
                dict.set_item(key, items)?;
            }
        }
        Ok(dict)
    }

    /// config.json as the engine read it, as JSON.
    fn config(&self) -> PyResult<String> {
        serde_json::to_string(self.model.config())
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }
}

#[pymodule]
fn _bertrt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_class::<RawModel>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
