//! A restricted unpickler for what `torch.save` writes for a state dict.
//!
//! It understands the opcodes of pickle protocols 2 to 5 that build plain data (ints,
//! floats, strings, tuples, lists, dicts, the memo) and exactly these globals:
//! `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter` and the `torch.*Storage` classes (named in the
//! persistent ids of storages). Any other global, any other opcode, is an error: nothing
//! is ever imported or called, so a malicious pickle can do nothing but fail to load.
//! Every read is bounds-checked; truncated or garbled input is an error, never a panic.

use crate::error::{Error, Result};

/// What a storage holds (from its `torch.*Storage` class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageType {
    /// torch.FloatStorage
    F32,
    /// torch.HalfStorage
    F16,
    /// torch.BFloat16Storage
    BF16,
    /// torch.DoubleStorage
    F64,
    /// torch.LongStorage
    I64,
    /// torch.IntStorage
    I32,
    /// torch.ShortStorage
    I16,
    /// torch.CharStorage
    I8,
    /// torch.ByteStorage
    U8,
    /// torch.BoolStorage
    Bool,
}

impl StorageType {
    fn from_class(name: &str) -> Option<StorageType> {
        Some(match name {
            "FloatStorage" => StorageType::F32,
            "HalfStorage" => StorageType::F16,
            "BFloat16Storage" => StorageType::BF16,
            "DoubleStorage" => StorageType::F64,
            "LongStorage" => StorageType::I64,
            "IntStorage" => StorageType::I32,
            "ShortStorage" => StorageType::I16,
            "CharStorage" => StorageType::I8,
            "ByteStorage" => StorageType::U8,
            "BoolStorage" => StorageType::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            StorageType::F64 | StorageType::I64 => 8,
            StorageType::F32 | StorageType::I32 => 4,
            StorageType::F16 | StorageType::BF16 | StorageType::I16 => 2,
            StorageType::I8 | StorageType::U8 | StorageType::Bool => 1,
        }
    }
}

/// A tensor as the pickle describes it: a view into a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    /// The storage's key (its file is `data/{key}` in the archive).
    pub key: String,
    /// The storage's element type.
    pub dtype: StorageType,
    /// Offset into the storage, in elements.
    pub offset: usize,
    /// Shape.
    pub size: Vec<usize>,
    /// Strides, in elements.
    pub stride: Vec<usize>,
}

/// A value on the unpickler's stack.
#[derive(Debug, Clone)]
enum Val {
    /// None, booleans, floats, bytes: read past, never used.
    Other,
    Int(i64),
    Str(String),
    Tuple(Vec<Val>),
    List(Vec<Val>),
    Dict(Vec<(Val, Val)>),
    Global(Global),
    Storage {
        key: String,
        dtype: StorageType,
    },
    Tensor(TensorRef),
    Mark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(StorageType),
}

fn bad(message: impl Into<String>) -> Error {
    Error::Unsupported(format!("pytorch pickle: {}", message.into()))
}

/// Reads a state dict pickle: every (name, tensor) in it, in order.
pub fn state_dict(data: &[u8]) -> Result<Vec<(String, TensorRef)>> {
    let root = Machine::new(data).run()?;
    let Val::Dict(items) = root else {
        return Err(bad("the pickle is not a dict of tensors"));
    };
    let mut out = Vec::with_capacity(items.len());
    for (k, v) in items {
        match (k, v) {
            (Val::Str(name), Val::Tensor(t)) => out.push((name, t)),
            // Non-tensor entries (e.g. `_metadata`, numbers) are not weights.
            (Val::Str(_), _) => {}
            _ => return Err(bad("a state dict key is not a string")),
        }
    }
    Ok(out)
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Val>,
    memo: std::collections::HashMap<u32, Val>,
}

/// More values than any state dict has: a bound on memory for hostile input.
const MAX_VALUES: usize = 50_000_000;

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Machine {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: std::collections::HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| bad("truncated"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("truncated"))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| bad("a name is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn string(&mut self, n: usize) -> Result<Val> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| bad("a string is not UTF-8"))?;
        Ok(Val::Str(s.to_string()))
    }

    fn push(&mut self, v: Val) -> Result<()> {
        if self.stack.len() >= MAX_VALUES {
            return Err(bad("too many values"));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Val> {
        self.stack.pop().ok_or_else(|| bad("stack underflow"))
    }

    fn top(&mut self) -> Result<&mut Val> {
        self.stack.last_mut().ok_or_else(|| bad("stack underflow"))
    }

    /// The values above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Val>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Val::Mark))
            .ok_or_else(|| bad("no mark"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn memo_put(&mut self, key: u32) -> Result<()> {
        let v = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| bad("stack underflow"))?;
        if self.memo.len() >= MAX_VALUES {
            return Err(bad("too many memo entries"));
        }
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<()> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| bad(format!("memo {key} unset")))?;
        self.push(v)
    }

    fn global(module: &str, name: &str) -> Result<Global> {
        match (module, name) {
            ("collections", "OrderedDict") => Ok(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensor),
            ("torch._utils", "_rebuild_parameter") => Ok(Global::RebuildParameter),
            ("torch", class) => StorageType::from_class(class)
                .map(Global::Storage)
                .ok_or_else(|| refused(module, name)),
            _ => Err(refused(module, name)),
        }
    }

    fn run(mut self) -> Result<Val> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if !(2..=5).contains(&proto) {
                        return Err(bad(format!("pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint
                }
                b'.' => return self.pop(),
                b'}' => self.push(Val::Dict(Vec::new()))?,
                b']' => self.push(Val::List(Vec::new()))?,
                b')' => self.push(Val::Tuple(Vec::new()))?,
                b'(' => self.push(Val::Mark)?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Val::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let at = self
                        .stack
                        .len()
                        .checked_sub(n)
                        .ok_or_else(|| bad("stack underflow"))?;
                    let items = self.stack.split_off(at);
                    self.push(Val::Tuple(items))?
                }
                b'N' => self.push(Val::Other)?,
                0x88 => self.push(Val::Other)?,
                0x89 => self.push(Val::Other)?,
                b'K' => {
                    let v = self.u8()?;
                    self.push(Val::Int(v as i64))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Val::Int(v as i64))?
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Val::Int(v as i64))?
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(bad("an integer over 64 bits"));
                    }
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Val::Int(v))?
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Val::Other)?
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                0x8d => {
                    let n = usize::try_from(self.u64()?).map_err(|_| bad("truncated"))?;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.push(Val::Other)?
                }
                b'T' | b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.push(Val::Other)?
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.push(Val::Other)?
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = Self::global(module, name)?;
                    self.push(Val::Global(g))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Val::Str(module), Val::Str(name)) = (module, name) else {
                        return Err(bad("STACK_GLOBAL of non-strings"));
                    };
                    let g = Self::global(&module, &name)?;
                    self.push(Val::Global(g))?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = storage(pid)?;
                    self.push(v)?
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = call(f, args)?;
                    self.push(v)?
                }
                b'b' => {
                    // BUILD: state for the object below (an OrderedDict's `_metadata`);
                    // it holds no weights, so it is dropped.
                    self.pop()?;
                    self.top()?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Val::Dict(d) => d.push((k, v)),
                        _ => return Err(bad("SETITEM on a non-dict")),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(bad("SETITEMS with an odd count"));
                    }
                    let Val::Dict(d) = self.top()? else {
                        return Err(bad("SETITEMS on a non-dict"));
                    };
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Val::List(l) => l.push(v),
                        _ => return Err(bad("APPEND on a non-list")),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Val::List(l) => l.extend(items),
                        _ => return Err(bad("APPENDS on a non-list")),
                    }
                }
                other => {
                    return Err(bad(format!(
                        "opcode 0x{other:02x} at byte {} is not one a state dict uses",
                        self.pos - 1
                    )))
                }
            }
        }
    }
}

fn refused(module: &str, name: &str) -> Error {
    bad(format!(
        "refused the global `{module}.{name}`: only the objects torch.save writes for a \
         state dict (OrderedDict, tensors, storages) are read, nothing is run"
    ))
}

/// A persistent id: `('storage', torch.XStorage, key, location, numel)`.
fn storage(pid: Val) -> Result<Val> {
    let Val::Tuple(items) = pid else {
        return Err(bad("a persistent id is not a tuple"));
    };
    match items.as_slice() {
        [Val::Str(kind), Val::Global(Global::Storage(dtype)), Val::Str(key), _, _]
            if kind == "storage" =>
        {
            Ok(Val::Storage {
                key: key.clone(),
                dtype: *dtype,
            })
        }
        _ => Err(bad("a persistent id is not a storage")),
    }
}

fn usizes(v: &Val, what: &str) -> Result<Vec<usize>> {
    let Val::Tuple(items) = v else {
        return Err(bad(format!("a tensor's {what} is not a tuple")));
    };
    items
        .iter()
        .map(|i| match i {
            Val::Int(n) if *n >= 0 => Ok(*n as usize),
            _ => Err(bad(format!(
                "a tensor's {what} holds a negative or non-integer"
            ))),
        })
        .collect()
}

/// REDUCE with one of the allowed callables.
fn call(f: Val, args: Val) -> Result<Val> {
    let Val::Tuple(args) = args else {
        return Err(bad("REDUCE arguments are not a tuple"));
    };
    match f {
        Val::Global(Global::OrderedDict) => Ok(Val::Dict(Vec::new())),
        Val::Global(Global::RebuildTensor) => {
            let [Val::Storage { key, dtype }, Val::Int(offset), size, stride, ..] = args.as_slice()
            else {
                return Err(bad("_rebuild_tensor_v2 with unexpected arguments"));
            };
            let size = usizes(size, "size")?;
            let stride = usizes(stride, "stride")?;
            if size.len() != stride.len() || *offset < 0 {
                return Err(bad("a tensor's size and stride disagree"));
            }
            Ok(Val::Tensor(TensorRef {
                key: key.clone(),
                dtype: *dtype,
                offset: *offset as usize,
                size,
                stride,
            }))
        }
        Val::Global(Global::RebuildParameter) => match args.into_iter().next() {
            Some(t @ Val::Tensor(_)) => Ok(t),
            _ => Err(bad("_rebuild_parameter without a tensor")),
        },
        _ => Err(bad("REDUCE of something that is not an allowed callable")),
    }
}
