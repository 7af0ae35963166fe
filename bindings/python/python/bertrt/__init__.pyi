from typing import Any, Optional, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str

class SentenceTransformer:
    def __init__(self, model: Optional[str] = None, device: str = "cpu", dtype: Optional[str] = None) -> None: ...
    def get_sentence_embedding_dimension(self) -> int: ...
    @overload
    def encode(self, sentences: str, batch_size: int = 32, show_progress_bar: Optional[bool] = None,
               output_value: str = "sentence_embedding", convert_to_numpy: bool = True,
               normalize_embeddings: bool = False, truncate_dim: Optional[int] = None,
               prompt: Optional[str] = None) -> npt.NDArray[np.float32]: ...
    @overload
    def encode(self, sentences: list[str], batch_size: int = 32, show_progress_bar: Optional[bool] = None,
               output_value: str = "sentence_embedding", convert_to_numpy: bool = True,
               normalize_embeddings: bool = False, truncate_dim: Optional[int] = None,
               prompt: Optional[str] = None) -> Union[npt.NDArray[np.float32], list[npt.NDArray[np.float32]]]: ...
    def similarity(self, a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float32]: ...

class CrossEncoder:
    num_labels: int
    def __init__(self, model: str, device: str = "cpu", dtype: Optional[str] = None) -> None: ...
    def predict(self, sentences: Any, batch_size: int = 32, show_progress_bar: Optional[bool] = None,
                activation_fn: Any = None, apply_softmax: bool = False, convert_to_numpy: bool = True) -> Any: ...
    def rank(self, query: str, documents: list[str], top_k: Optional[int] = None, return_documents: bool = False,
             batch_size: int = 32, show_progress_bar: Optional[bool] = None, activation_fn: Any = None,
             apply_softmax: bool = False) -> list[dict[str, Any]]: ...

class Pipeline:
    task: str
    def __init__(self, task: str, model: Optional[str] = None, device: str = "cpu",
                 dtype: Optional[str] = None, **options: Any) -> None: ...
    def __call__(self, inputs: Any = None, question: Optional[Any] = None, context: Optional[Any] = None,
                 **options: Any) -> Any: ...

def pipeline(task: str, model: Optional[str] = None, device: str = "cpu", dtype: Optional[str] = None,
             **options: Any) -> Pipeline: ...

class Model:
    config: dict[str, Any]
    def __init__(self, path: Optional[str] = None, head: Optional[str] = None, device: str = "cpu",
                 dtype: Optional[str] = None) -> None: ...
    def forward(self, input_ids: npt.ArrayLike, attention_mask: Optional[npt.ArrayLike] = None,
                token_type_ids: Optional[npt.ArrayLike] = None, head: Optional[str] = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> dict[str, Any]: ...
    def __call__(self, input_ids: npt.ArrayLike, attention_mask: Optional[npt.ArrayLike] = None,
                 token_type_ids: Optional[npt.ArrayLike] = None, head: Optional[str] = None,
                 output_hidden_states: bool = False, output_attentions: bool = False) -> dict[str, Any]: ...
