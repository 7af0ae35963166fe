//! A dense row-major f32 tensor: the unit of weights and of named outputs. Its elements
//! are owned, or borrowed from a memory-mapped packed weights file (no copy).

use std::sync::Arc;

use memmap2::Mmap;
use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Where a tensor's elements live.
#[derive(Debug, Clone)]
enum Storage {
    Owned(Vec<f32>),
    /// `len` f32 values at byte `offset` of a mapped file (4-byte aligned, checked).
    Mapped {
        map: Arc<Mmap>,
        offset: usize,
        len: usize,
    },
}

/// A row-major f32 tensor with its shape.
#[derive(Debug, Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.data() == other.data()
    }
}

impl Default for Tensor {
    /// An empty tensor of shape [0].
    fn default() -> Self {
        Tensor {
            shape: vec![0],
            storage: Storage::Owned(Vec::new()),
        }
    }
}

impl Tensor {
    /// Wraps `data` as a tensor of `shape`; `None` if the element counts differ.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Option<Self> {
        (shape.iter().product::<usize>() == data.len()).then_some(Tensor {
            shape,
            storage: Storage::Owned(data),
        })
    }

    /// A tensor viewing f32 values inside a mapped file; `None` unless the range is in
    /// bounds, 4-byte aligned and matches the shape.
    pub(crate) fn mapped(shape: Vec<usize>, map: Arc<Mmap>, offset: usize) -> Option<Self> {
        let len: usize = shape.iter().product();
        let end = offset.checked_add(len.checked_mul(4)?)?;
        let aligned = (map.as_ptr() as usize + offset).is_multiple_of(std::mem::align_of::<f32>());
        (end <= map.len() && aligned).then_some(Tensor {
            shape,
            storage: Storage::Mapped { map, offset, len },
        })
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[f32] {
        match &self.storage {
            Storage::Owned(v) => v,
            Storage::Mapped { map, offset, len } => {
                let bytes = &map[*offset..*offset + *len * 4];
                // SAFETY: `mapped` checked bounds and 4-byte alignment; every bit pattern
                // is a valid f32; the map is read-only and lives as long as `self`.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), *len) }
            }
        }
    }

    /// True when the elements are borrowed from a mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }

    /// Consumes the tensor, returning its elements (copied out of a mapped file).
    pub fn into_data(self) -> Vec<f32> {
        match self.storage {
            Storage::Owned(v) => v,
            Storage::Mapped { .. } => self.data().to_vec(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data().len()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Serializes as nested JSON lists following the shape (a scalar for rank 0).
impl Serialize for Tensor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Nested {
            shape: &self.shape,
            data: self.data(),
        }
        .serialize(serializer)
    }
}

struct Nested<'a> {
    shape: &'a [usize],
    data: &'a [f32],
}

impl Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.shape.split_first() {
            None => serializer.serialize_f32(self.data.first().copied().unwrap_or(0.0)),
            Some((&n, rest)) => {
                let inner: usize = rest.iter().product();
                let mut seq = serializer.serialize_seq(Some(n))?;
                for i in 0..n {
                    seq.serialize_element(&Nested {
                        shape: rest,
                        data: &self.data[i * inner..(i + 1) * inner],
                    })?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_nested() {
        let t = Tensor::new(vec![2, 1, 2], vec![1.0, 2.0, 3.0, 4.5]).unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "[[[1.0,2.0]],[[3.0,4.5]]]"
        );
        assert!(Tensor::new(vec![3], vec![1.0]).is_none());
    }
}
