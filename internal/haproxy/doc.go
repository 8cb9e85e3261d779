// Package haproxy manages the HAProxy of an LB7: it generates its
// configuration, runs it and reads its runtime state.
//
// Generate builds the configuration through client-native's configuration
// client (github.com/haproxytech/client-native/v6), never from text
// templates: a frontend "www" bound on the VIPs and on the LB7's own
// address, whose monitor URI /healthcheck fails when backend "servers" has
// no usable server or when the fake server of backend "enabler" is down.
// That fake server only runs an agent check against the LB7's own agent,
// so writing "down" into the LB7's /etc/lb/agent-check takes the LB7 out of
// every LB4, as in the reference lab. Every real server has an HTTP health
// check and an agent check ("drain", "maint", "down", "ready", "N%"...).
//
// Start runs "haproxy -db" (one process, no master: see Process) in its
// own process group and waits until its stats socket answers; Reload
// starts a new process that takes over the listening sockets (-x) while
// the old one finishes its connections (-sf); Stop ends them all. Runtime
// reads server states through client-native's runtime client.
//
// What client-native v6.2.5 needs, or cannot do, with HAProxy 2.6:
//   - New runs "haproxy -v" and CommitTransaction runs "haproxy -c", so
//     Generate needs the haproxy program; transactions go to a temporary
//     directory (the default is /etc/haproxy/transactions).
//   - PushDefaultsConfiguration fails on an empty file; only named defaults
//     sections can be created, hence "defaults lab".
//   - Time values are written in bare milliseconds unless the
//     PreferredTimeSuffix("nearest") option is given, although "nearest" is
//     documented as the default.
//   - The file starts with client-native's "# _version=N" comment and binds
//     get "name ADDR:PORT"; both are harmless to HAProxy.
//   - Its runtime Reload needs HAProxy 2.7 and a master (master CLI
//     "reload"); Process.Reload does without either.
//   - GetServersState has no weight, sessions or agent result: Servers
//     merges it with GetStats ("show stat"). It decodes srv_admin_state as
//     hexadecimal although HAProxy prints it in decimal: right for forced
//     maintenance and drain (what agents set), wrong for inherited drain
//     (a "track"ed server), which this configuration never uses.
package haproxy
