// Package unix is the "unix" workload attestor: it describes a calling
// process by its user, groups and executable.
//
// Selectors, all of type "unix":
//
//	uid:<n>                     effective UID when the caller connected
//	gid:<n>                     effective primary GID when the caller connected
//	user:<name>                 the UID's user name, when it resolves
//	group:<name>                the primary GID's group name, when it resolves
//	supplementary_gid:<n>       each GID on the Groups line of /proc/<pid>/status
//	supplementary_group:<name>  its name, when it resolves
//	path:<path>                 the executable (/proc/<pid>/exe), with DiscoverWorkloadPath
//	sha256:<hex>                its SHA-256, with DiscoverWorkloadPath, up to WorkloadSizeLimit bytes
//	container:true              the caller runs in another PID namespace than the agent's
//
// Containers are not the host. A caller in another PID namespace (a
// container, or anything started with unshare --pid) gets container:true,
// and its path is the executable's path inside its own root
// (/proc/<pid>/root), checked to name the file it runs, or omitted; the
// hash is always of the file it runs. The agent never gives such a caller
// an entry made only of unix selectors unless the entry also carries
// unix:container:true (model.WorkloadMatches): a process in a container with
// uid 1000 is not the host's uid 1000.
//
// Names are resolved with os/user and remembered for 30 seconds; hashes are
// remembered per file version (device, inode, size, mtime and ctime).
//
// After reading /proc the attestor checks, through the connection's pidfd,
// that the caller is still alive: otherwise its PID may have been reused by
// another process whose /proc entries were read, and attestation fails.
//
// The attestor needs Linux 5.3 or later (pidfd); on 6.5 or later the pidfd
// comes from the socket itself (SO_PEERPIDFD), which also closes the window
// between connect and accept.
package unix
