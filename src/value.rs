//! Request-scoped values: typed keys that live in `static`s.
//!
//! A key is identified by its address, so two keys never collide even with equal names, and a
//! key's type fixes the type of the values stored under it: no downcasting, no `Any`.
//!
//! [`Key<T>`] stores a small `Copy` value inside the node (no allocation; at most 16 bytes and
//! 8-byte alignment, checked at compile time). With `alloc`, [`HeapKey<T>`](crate::HeapKey)
//! stores any `T: Send + Sync` behind an `Arc`.

use core::fmt;
use core::marker::PhantomData;

use crate::node::Inline;

/// The common prefix of every key type (`#[repr(C)]`), read by `Display`, `dump` and `value`.
#[repr(C)]
pub(crate) struct KeyInfo {
    pub(crate) name: &'static str,
    pub(crate) type_name: fn() -> &'static str,
    /// Whether any context was ever made with this key (monotonic: false, then true forever).
    /// A lookup of a key never bound anywhere is then one load, whatever the depth of the
    /// context (issue 14: `DeepValueMiss`).
    ///
    /// ORDERING: Relaxed on both sides. `with_value` sets it before the node that binds the key
    /// is published (a Release), and a context reaching that node — the node itself or a
    /// descendant — was made by, or handed over from, code that happened after that
    /// publication; by write-read coherence its load then reads `true`. A `false` read means no
    /// node on this context's path binds the key. (A portable-atomic `AtomicBool`, not the
    /// `sync` shim: keys are `static`s made by a `const fn`; it is a plain byte load and store.)
    pub(crate) bound: portable_atomic::AtomicBool,
}

impl KeyInfo {
    /// The prefix of a key named `name` whose values are `type_name()`s.
    pub(crate) const fn new(name: &'static str, type_name: fn() -> &'static str) -> Self {
        KeyInfo {
            name,
            type_name,
            bound: portable_atomic::AtomicBool::new(false),
        }
    }

    /// The prefix of any key type: every key type starts with a `KeyInfo` (`#[repr(C)]`).
    #[inline(always)]
    pub(crate) fn of<K: crate::KeyKind>(key: &'static K) -> &'static KeyInfo {
        // SAFETY: `KeyKind` is sealed; its implementors (`Key<T>`, `HeapKey<T>`) are
        // `#[repr(C)]` structs whose first field is a `KeyInfo`.
        unsafe { &*core::ptr::from_ref(key).cast::<KeyInfo>() }
    }
}

/// What a [`Kind::HeapValue`](crate::node::Kind) node stores in its 16 inline bytes: a pointer
/// to the value and the function that drops it, written together by the key type's `store`. The
/// core drops a heap value through it without knowing the layer that made it (layers depend on
/// the core, never the reverse).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Owned {
    pub(crate) ptr: *const (),
    pub(crate) drop: unsafe fn(*const ()),
}

const _: () = assert!(
    core::mem::size_of::<Owned>() <= core::mem::size_of::<Inline>()
        && core::mem::align_of::<Owned>() <= core::mem::align_of::<Inline>()
);

/// Drops the value of a heap value node being torn down (user code: its `Drop` may panic).
///
/// # Safety
/// `val` holds an [`Owned`] written by a heap key's `store`, not dropped before.
pub(crate) unsafe fn drop_owned(val: &Inline) {
    // SAFETY: per the contract an `Owned` is stored there (it fits: asserted above).
    let owned = unsafe { val.as_ptr().cast::<Owned>().read() };
    // SAFETY: the pointer and its drop function were written together by `store`.
    unsafe { (owned.drop)(owned.ptr) };
}

/// A key for a small `Copy` value stored inline in the context node.
///
/// ```
/// use ctxtree::{Arena, Key};
/// static USER: Key<u32> = Key::new("user");
/// static TRACE: Key<Option<u64>> = Key::new("trace");
/// static ARENA: Arena<8> = Arena::new();
///
/// let a = ARENA.background().with_value(&USER, 7)?;
/// let b = a.with_value(&USER, 8)?; // shadows
/// assert_eq!((a.value(&USER), b.value(&USER)), (Some(7), Some(8)));
///
/// // A binding to "none" still hides an outer binding of the same key.
/// let c = b.with_value(&TRACE, Some(1))?.with_value(&TRACE, None)?;
/// assert_eq!(c.value(&TRACE), Some(None));
/// # Ok::<(), ctxtree::CreateError>(())
/// ```
#[repr(C)]
pub struct Key<T: 'static> {
    info: KeyInfo,
    _t: PhantomData<fn() -> T>,
}

impl<T: 'static> Key<T> {
    /// A key whose `Display` name is `name`. Declare it in a `static`: its address is its
    /// identity.
    pub const fn new(name: &'static str) -> Self {
        Key {
            info: KeyInfo::new(name, core::any::type_name::<T>),
            _t: PhantomData,
        }
    }

    /// The key's name.
    pub const fn name(&self) -> &'static str {
        self.info.name
    }
}

impl<T> fmt::Debug for Key<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key<{}>({:?})", (self.info.type_name)(), self.info.name)
    }
}

mod sealed {
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// The key types accepted by [`Context::with_value`](crate::Context::with_value) and
/// [`Context::value`](crate::Context::value): [`Key<T>`] and, with `alloc`,
/// [`HeapKey<T>`](https://docs.rs/ctxtree/latest/ctxtree/struct.HeapKey.html). Sealed.
pub trait KeyKind: Sealed + Sync + 'static {
    /// What `with_value` takes.
    type Value;
    /// What `value` returns.
    type Out;
    #[doc(hidden)]
    const HEAP: bool;
    /// Writes `value` into the node's 16-byte, pointer-aligned value storage at `dst`.
    ///
    /// # Safety
    /// `dst` is valid for 16 bytes of writes and pointer-aligned (a `T` of larger alignment is written unaligned).
    #[doc(hidden)]
    unsafe fn store(value: Self::Value, dst: *mut u8);
    /// Reads the value stored by `store` at `src`.
    ///
    /// # Safety
    /// `src` holds a value written by this key type's `store`, still alive.
    #[doc(hidden)]
    unsafe fn load(src: *const u8) -> Self::Out;
}

impl<T: 'static> Sealed for Key<T> {}

impl<T: Copy + Send + Sync + 'static> KeyKind for Key<T> {
    type Value = T;
    type Out = T;
    const HEAP: bool = false;

    #[inline]
    unsafe fn store(value: T, dst: *mut u8) {
        const {
            assert!(
                core::mem::size_of::<T>() <= 16 && core::mem::align_of::<T>() <= 8,
                "ctxtree: a Key<T> value must fit 16 bytes (use HeapKey<T> with alloc)"
            )
        };
        // SAFETY: per the contract `dst` is 16 bytes; T fits (asserted above). Unaligned: the
        // node's inline storage is only pointer-aligned on 32-bit targets.
        unsafe { dst.cast::<T>().write_unaligned(value) }
    }

    #[inline]
    unsafe fn load(src: *const u8) -> T {
        // SAFETY: per the contract a T is stored there (unaligned, see `store`); T is Copy.
        unsafe { src.cast::<T>().read_unaligned() }
    }
}
