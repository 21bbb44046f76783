//! Protobuf contracts of Minyi, generated at build time from `proto/minyi/**.proto`.
//!
//! - [`common`]: shared enums and messages (channels, locations, callers).
//! - [`intake`]: `IntakeService`, used by call-centre front ends.
//! - [`dispatch`]: `DispatchService`, used by handlers and dispatchers.
//! - [`catalog`]: `CatalogService`, the versioned responsibility catalog for operators.
//! - [`events`]: the messages published on the bus.
//! - [`supervisor`]: `SupervisorService`, the supervisor dashboard's figures.
//!
//! [`FILE_DESCRIPTOR_SET`] feeds gRPC reflection, so `grpcurl` works against every server.

#![allow(clippy::all, missing_docs)]

/// Generated code, nested as the proto packages are (`minyi.<area>.v1`).
pub mod minyi {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("minyi.common.v1");
        }
    }
    pub mod intake {
        pub mod v1 {
            tonic::include_proto!("minyi.intake.v1");
        }
    }
    pub mod arbitration {
        pub mod v1 {
            tonic::include_proto!("minyi.arbitration.v1");
        }
    }
    pub mod catalog {
        pub mod v1 {
            tonic::include_proto!("minyi.catalog.v1");
        }
    }
    pub mod classification {
        pub mod v1 {
            tonic::include_proto!("minyi.classification.v1");
        }
    }
    pub mod dispatch {
        pub mod v1 {
            tonic::include_proto!("minyi.dispatch.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("minyi.events.v1");
        }
    }
    pub mod supervisor {
        pub mod v1 {
            tonic::include_proto!("minyi.supervisor.v1");
        }
    }
}

pub use minyi::arbitration::v1 as arbitration;
pub use minyi::catalog::v1 as catalog;
pub use minyi::classification::v1 as classification;
pub use minyi::common::v1 as common;
pub use minyi::dispatch::v1 as dispatch;
pub use minyi::events::v1 as events;
pub use minyi::intake::v1 as intake;
pub use minyi::supervisor::v1 as supervisor;

/// Encoded `FileDescriptorSet` of every Minyi proto, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("minyi_descriptor");
