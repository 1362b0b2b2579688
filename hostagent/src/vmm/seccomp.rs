//! The VMX's seccomp filter: once the VM is built, strata-vmx may only make the system
//! calls it needs to run, snapshot, reset (re-executing itself, so start-up calls are in the
//! list too) and exit. Anything else kills the process: a compromised device model cannot
//! reach the rest of the host's kernel surface (no new sockets to the network, no ptrace,
//! no mounts, no module loading…).
//!
//! The list was taken from strace of every path the tests drive (boot, serial, control,
//! pause, snapshot, restore, dirty log, virtio-blk, reset, crash, stop).

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// Why the filter could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the seccomp filter: {0}")]
pub struct SeccompError(String);

/// System calls strata-vmx makes.
pub const ALLOWED: &[i64] = &[
    // KVM, devices, files, sockets.
    libc::SYS_ioctl,
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_lseek,
    libc::SYS_openat,
    libc::SYS_access,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_flock,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_ftruncate,
    libc::SYS_rename,
    libc::SYS_unlink,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_eventfd2,
    libc::SYS_poll,
    // The device event loop (tap readiness).
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_socket,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_setsockopt,
    libc::SYS_shutdown,
    // Memory.
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    // Threads, signals, time.
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_yield,
    libc::SYS_prctl,
    libc::SYS_sigaltstack,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_tgkill,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_restart_syscall,
    libc::SYS_getrandom,
    // Reset re-executes strata-vmx; the dynamic loader and Rust's start-up then run.
    libc::SYS_execve,
    libc::SYS_arch_prctl,
    libc::SYS_set_tid_address,
    libc::SYS_prlimit64,
    // ...and installs its filter again (filters only ever add restrictions).
    libc::SYS_seccomp,
    // The end.
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// Compiles the filter: the calls in [`ALLOWED`] pass, any other kills the process.
pub fn filter() -> Result<BpfProgram, SeccompError> {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        ALLOWED.iter().map(|nr| (*nr, Vec::new())).collect();
    let f = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| SeccompError(e.to_string()))?;
    f.try_into()
        .map_err(|e: seccompiler::BackendError| SeccompError(e.to_string()))
}

/// Installs the filter on the calling thread (threads it starts later inherit it, and so
/// does a re-executed strata-vmx).
pub fn install() -> Result<(), SeccompError> {
    let prog = filter()?;
    seccompiler::apply_filter(&prog).map_err(|e| SeccompError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_outside_the_list_kills_the_process() {
        let prog = filter().unwrap();
        // SAFETY: the child only installs the precompiled filter and makes raw system calls
        // before _exit; it touches no lock another thread of the test runner could hold.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                if seccompiler::apply_filter(&prog).is_err() {
                    // SAFETY: _exit is async-signal-safe.
                    unsafe { libc::_exit(3) };
                }
                // SAFETY: getppid takes no arguments; allowed calls are not killed...
                let _ = unsafe { libc::getpid() };
                // ...but getppid is not in the list: the kernel kills us here.
                // SAFETY: as above.
                unsafe { libc::syscall(libc::SYS_getppid) };
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Signaled(
                        child,
                        nix::sys::signal::Signal::SIGSYS,
                        false
                    ),
                    "a forbidden call is fatal"
                );
            }
        }
    }
}
