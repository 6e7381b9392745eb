// systemd's readiness protocol (sd_notify(3)) without libsystemd: under a
// Type=notify unit, systemd passes a datagram socket in $NOTIFY_SOCKET and
// reads state lines from it: READY=1 once pgmux listens, RELOADING=1 (with
// MONOTONIC_USEC) then READY=1 around a reload, STOPPING=1 when a shutdown
// starts. Without $NOTIFY_SOCKET every call does nothing.
#pragma once

#include <string_view>

namespace pgmux::proxy {

// Sends `state` ("READY=1", "STOPPING=1", "STATUS=...") to systemd; never
// blocks, never fails loudly (a debug log line at most).
void notify_systemd(std::string_view state);

// "RELOADING=1\nMONOTONIC_USEC=<now>", as systemd 253's notify-reload wants.
void notify_systemd_reloading();

}  // namespace pgmux::proxy
