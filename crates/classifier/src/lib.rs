//! minyi-classifier (in progress)
