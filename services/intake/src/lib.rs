//! minyi-intake
