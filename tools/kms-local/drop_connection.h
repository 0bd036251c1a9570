// Closes the TCP connection a request came on without answering it: the "dropped
// connection" fault. cpp-httplib 0.11 does not hand a handler its socket, so we find it:
// through the TLS session when there is one, otherwise as the fd whose local and peer
// ports are the request's (unique on one host: the server listens on one address).
#pragma once

namespace kmsfs::kms_local {

// `ssl` is the request's const SSL* (null over plain HTTP). shutdown(2), not close(2):
// the fd stays cpp-httplib's to close, its pending write fails and the peer reads EOF
// before any byte of a response. False if the socket was not found.
bool drop_connection(const void* ssl, int local_port, int remote_port);

}  // namespace kmsfs::kms_local
