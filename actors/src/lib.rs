//! Call runtime.
