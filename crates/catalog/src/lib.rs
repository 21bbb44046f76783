//! minyi-catalog (in progress)
