//! A dense row-major f32 tensor: the unit of weights and of named outputs.

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// A row-major f32 tensor with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Default for Tensor {
    /// An empty tensor of shape [0].
    fn default() -> Self {
        Tensor {
            shape: vec![0],
            data: Vec::new(),
        }
    }
}

impl Tensor {
    /// Wraps `data` as a tensor of `shape`; `None` if the element counts differ.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Option<Self> {
        (shape.iter().product::<usize>() == data.len()).then_some(Tensor { shape, data })
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Consumes the tensor, returning its elements.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Serializes as nested JSON lists following the shape (a scalar for rank 0).
impl Serialize for Tensor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Nested {
            shape: &self.shape,
            data: &self.data,
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
