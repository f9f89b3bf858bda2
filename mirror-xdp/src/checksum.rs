//! The Internet checksum (RFC 1071), for the frames user space builds: the audit corpus,
//! the reference model's SYN cookie replies, the tests' frames. It lives with the other wire
//! formats in `mirror_xdp_common::wire`.

pub use mirror_xdp_common::wire::checksum;
