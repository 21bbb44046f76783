//! minyi-classification
