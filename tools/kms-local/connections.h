// Direct action on the server's TCP connections, which cpp-httplib 0.11 does not hand to
// its users: we find them as the fds whose local port is the server's (and, for one
// request, whose peer port is the request's), or through the request's TLS session.
// shutdown(2) only, never close(2): each fd stays cpp-httplib's to close.
#pragma once

namespace kmsfs::kms_local {

// The "dropped connection" fault: the peer reads EOF before any byte of an answer, and
// cpp-httplib's pending write fails. `ssl` is the request's const SSL* (null over plain
// HTTP). False if the socket was not found.
bool drop_connection(const void* ssl, int local_port, int remote_port);

// For a prompt stop: stops reading on every accepted connection of `local_port`, so
// keep-alive connections waiting for a next request end now instead of after their idle
// timeout, while requests already read still get their answers written.
void end_idle_connections(int local_port);

}  // namespace kmsfs::kms_local
