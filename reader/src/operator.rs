//! Who runs this process, for the records that name who did something (an undo run, a
//! takeover): the operating-system login and host. Never a database login.

/// The operating-system login (`USER`, else `LOGNAME`), if the environment says.
pub fn login() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|l| !l.is_empty())
}

/// The host's name (the kernel's, else `HOSTNAME`, else `COMPUTERNAME`), if known.
pub fn host() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .filter(|h| !h.is_empty())
}
