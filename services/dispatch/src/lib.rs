//! minyi-dispatch
