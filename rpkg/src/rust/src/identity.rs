//! The identity of an R value, for serializing and hashing a large global once per session.
//!
//! R copies a value before changing it when anything else refers to it, and the R package keeps
//! a reference to every value it remembers: R code cannot change such a value in place, it
//! makes a changed copy (a new object at a new address). So a remembered value found again at
//! the same address, with the same tree of nodes (every node's address, type and length, which
//! also catches compiled code that swaps columns or attributes in place), is the value that
//! was sent. Values this reasoning does not cover have no identity and are serialized every
//! time:
//! - values holding an environment (other than the global, base and empty environments,
//!   namespaces and attached packages, which `serialize()` writes as references, and the
//!   `srcfile` of functions' source references): its contents can change without any copy
//!   (R6 objects, closures over local state, models fitted inside a function);
//! - external pointers, weak references, promises and anything else unusual;
//! - data.tables, which are modified in place by design (`:=`, `set()`);
//! - trees of more than [`MAX_NODES`] nodes (checking them would cost too much).
//!
//! Compiled code that writes into a vector's memory in place while the vector is shared
//! (which breaks R's own semantics) is not detected; the option `starburst.reuse_globals =
//! FALSE` turns reuse off.
//!
//! The only unsafe code of the binding: reading R's object tree needs R's C API, which extendr
//! does not wrap for attributes and closures.
#![allow(unsafe_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::raw::c_char;

use extendr_api::prelude::*;
use extendr_ffi::SEXPTYPE::*;
use extendr_ffi::{
    CAR, CDR, R_BaseEnv, R_BaseNamespace, R_EmptyEnv, R_GlobalEnv, R_IsNamespaceEnv,
    R_IsPackageEnv, R_NilValue, Rboolean, SEXP, TAG, TYPEOF, VECTOR_ELT, XLENGTH, get_closure_body,
    get_closure_env, get_closure_formals,
};

#[allow(improper_ctypes)] // SEXP is an opaque pointer, as in extendr-ffi
unsafe extern "C" {
    // Part of R's C API through R 4.4 (non-API since 4.5, where `R_mapAttrib` replaces it).
    fn ATTRIB(x: SEXP) -> SEXP;
    fn Rf_inherits(x: SEXP, name: *const c_char) -> Rboolean;
}

/// Trees larger than this are not checked (and so not reused).
pub const MAX_NODES: usize = 1_000_000;

/// `"<address>:<fingerprint>"` of `x`, or `None` when `x` has no stable identity.
pub fn of(x: &Robj) -> Option<String> {
    // SAFETY: called on R's main thread with a protected value (the argument of an .Call);
    // the walk only reads the tree.
    let sexp = unsafe { x.get() };
    let mut walk = Walk {
        hasher: DefaultHasher::new(),
        nodes: 0,
        depth: 0,
    };
    // SAFETY: as above.
    unsafe { walk.node(sexp)? };
    Some(format!("{:x}:{:016x}", sexp as usize, walk.hasher.finish()))
}

/// Trees nested deeper than this are not checked (the walk recurses).
const MAX_DEPTH: usize = 10_000;

struct Walk {
    /// SipHash with fixed keys: the same tree gives the same fingerprint in every call.
    hasher: DefaultHasher,
    nodes: usize,
    depth: usize,
}

impl Walk {
    /// Visits `x` and everything it holds; `None` when something is not reusable.
    unsafe fn node(&mut self, x: SEXP) -> Option<()> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        // SAFETY: the caller's.
        let seen = unsafe { self.visit(x) };
        self.depth -= 1;
        seen
    }

    unsafe fn visit(&mut self, x: SEXP) -> Option<()> {
        unsafe {
            self.nodes += 1;
            if self.nodes > MAX_NODES {
                return None;
            }
            let ty = TYPEOF(x);
            (x as usize).hash(&mut self.hasher);
            (ty as u32).hash(&mut self.hasher);
            match ty {
                NILSXP | SYMSXP | SPECIALSXP | BUILTINSXP | CHARSXP => return Some(()),
                LGLSXP | INTSXP | REALSXP | CPLXSXP | STRSXP | RAWSXP => {
                    XLENGTH(x).hash(&mut self.hasher);
                }
                VECSXP | EXPRSXP => {
                    if Rf_inherits(x, c"data.table".as_ptr()) != Rboolean::FALSE {
                        return None;
                    }
                    let n = XLENGTH(x);
                    n.hash(&mut self.hasher);
                    for i in 0..n {
                        self.node(VECTOR_ELT(x, i))?;
                    }
                }
                LISTSXP | LANGSXP | DOTSXP => {
                    let mut cell = x;
                    loop {
                        self.node(TAG(cell))?;
                        self.node(CAR(cell))?;
                        self.attributes(cell)?;
                        let next = CDR(cell);
                        if next == R_NilValue {
                            break;
                        }
                        if !matches!(TYPEOF(next), LISTSXP | LANGSXP | DOTSXP) {
                            self.node(next)?;
                            break;
                        }
                        self.nodes += 1;
                        if self.nodes > MAX_NODES {
                            return None;
                        }
                        (next as usize).hash(&mut self.hasher);
                        cell = next;
                    }
                    return Some(());
                }
                CLOSXP => {
                    self.node(get_closure_formals(x))?;
                    self.node(get_closure_body(x))?;
                    self.node(get_closure_env(x))?;
                }
                // Byte code is immutable; its constants are the closure's body, walked above.
                BCODESXP => return Some(()),
                ENVSXP => {
                    let fixed = x == R_GlobalEnv
                        || x == R_BaseEnv
                        || x == R_EmptyEnv
                        || x == R_BaseNamespace
                        || R_IsNamespaceEnv(x) != Rboolean::FALSE
                        || R_IsPackageEnv(x) != Rboolean::FALSE;
                    // Serialized as a reference, not by content: nothing in it travels. A
                    // `srcfile` (the source of functions defined with `keep.source`, as in
                    // RStudio) does travel, but what it says never changes.
                    let source = Rf_inherits(x, c"srcfile".as_ptr()) != Rboolean::FALSE;
                    return (fixed || source).then_some(());
                }
                // S4 objects: `S4SXP` before R 4.4, `OBJSXP` since (the binding's name follows
                // the R it is built against), both 25.
                _ if ty as u32 == 25 => {}
                _ => return None,
            }
            self.attributes(x)
        }
    }

    unsafe fn attributes(&mut self, x: SEXP) -> Option<()> {
        unsafe {
            let a = ATTRIB(x);
            if a == R_NilValue {
                Some(())
            } else {
                self.node(a)
            }
        }
    }
}
