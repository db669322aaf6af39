//! `router:plugin@0.2.0` (`wit/v0.2/`): a route's args are handed to every call. Its host side
//! is the reference the later versions delegate to; its `types` are the ones every version's
//! results are read as.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../../wit/v0.2",
    world: "plugin",
    // Calls run as futures: a deadline can end one that waits in WASI.
    exports: { default: async },
});
