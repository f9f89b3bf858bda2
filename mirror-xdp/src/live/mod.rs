//! The persisted live changes: `source` entries ([`sources`]) and `port` rules ([`ports`]),
//! kept in the state folder, and writing them into a generation's maps. Attach and reload
//! write them into every new generation; the locked commands that change them are in
//! [`crate::control`], above the lifecycle.

pub mod ports;
pub mod sources;
