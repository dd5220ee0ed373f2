# The first process of a candidate's namespaces (datakit.sandbox, isolation "namespaces"): still root, in new
# PID, network, mount, IPC and UTS namespaces made by `unshare`. Standard library only, one process, no
# shell: it builds the candidate's root filesystem with mount(2), then forks the candidate, which chroots,
# drops every privilege and becomes the harness. This process stays as the namespace's PID 1 and waits:
# PID 1 ignores signals it has no handler for (SIGXCPU among them), so the candidate must not be PID 1; and
# when PID 1 exits, the kernel kills every process left in the namespace.
#
# argv[1]: JSON {"root", "uid", "tmpfs_mb", "binds", "links", "python", "harness", "seccomp"}. Exit status: the
# candidate's, 128 + the signal that killed it, or 121 when the set-up itself failed (said on stderr).
import ctypes
import json
import os
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
SETUP_FAILED = 121
SCMP_ACT_ALLOW, SCMP_ACT_ERRNO = 0x7FFF0000, 0x00050000
DENIED = (  # debugging others, kernel extensions and tracing, namespaces and mounts, keyrings, async io
    "ptrace process_vm_readv process_vm_writev bpf perf_event_open userfaultfd io_uring_setup io_uring_enter "
    "io_uring_register kexec_load kexec_file_load init_module finit_module delete_module mount umount2 "
    "pivot_root chroot unshare setns swapon swapoff reboot acct quotactl syslog open_by_handle_at "
    "name_to_handle_at lookup_dcookie keyctl add_key request_key vhangup"
).split()
libc = ctypes.CDLL(None, use_errno=True)


def mount(source, target, fstype, flags, data=None):
    args = [x.encode() if isinstance(x, str) else x for x in (source, target, fstype, data)]
    if libc.mount(args[0], args[1], args[2], ctypes.c_ulong(flags), args[3]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def read_only_bind(path, inside, rec=True):
    os.makedirs(inside, exist_ok=True)
    mount(path, inside, None, MS_BIND | (MS_REC if rec else 0))
    mount("none", inside, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def build(cfg):
    root, uid = cfg["root"], cfg["uid"]
    os.makedirs(root, exist_ok=True)
    mount("none", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['tmpfs_mb']}m,mode=755")
    for path in cfg["binds"]:  # /usr, the interpreter's prefix, judge.code.binds
        read_only_bind(path, root + path)
    for name, target in cfg["links"]:  # /bin, /lib...: merged-/usr links, or folders bound like /usr
        if target is None:
            read_only_bind("/" + name, f"{root}/{name}")
        else:
            os.symlink(target, f"{root}/{name}")
    os.mkdir(root + "/dev")
    for dev in ("null", "zero", "random", "urandom"):
        node = f"{root}/dev/{dev}"
        open(node, "w").close()
        mount("/dev/" + dev, node, None, MS_BIND)
    os.mkdir(root + "/tmp")
    os.chmod(root + "/tmp", 0o1777)
    os.mkdir(root + "/tmp/work", 0o700)
    os.chown(root + "/tmp/work", uid, uid)


def deny_syscalls(library):
    """A seccomp filter (libseccomp, through ctypes): the system calls a candidate has no use for, which are
    the kernel's usual attack surface, fail with EPERM; everything else is allowed. Inherited across exec."""
    seccomp = ctypes.CDLL(library, use_errno=True)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = seccomp.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise OSError(0, "seccomp_init failed")
    for name in DENIED:
        nr = seccomp.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:  # not a system call of this architecture
            continue
        rc = seccomp.seccomp_rule_add(ctx, SCMP_ACT_ERRNO | 1, nr, 0)  # 1 = EPERM
        if rc != 0:
            raise OSError(-rc, f"seccomp rule for {name}")
    rc = seccomp.seccomp_load(ctx)
    if rc != 0:
        raise OSError(-rc, "seccomp_load")


def become_candidate(cfg):
    uid = cfg["uid"]
    os.chroot(cfg["root"])
    os.chdir("/tmp/work")
    for cap in range(64):  # the bounding set: no capability can ever come back, even through an exec
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:  # EINVAL: no such cap
            raise OSError(ctypes.get_errno(), f"dropping capability {cap}")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # from root to a user: the permitted and effective capabilities are cleared
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "no_new_privs")
    if cfg["seccomp"]:
        deny_syscalls(cfg["seccomp"])
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp/work", "LANG": "C.UTF-8"}
    os.execve(cfg["python"], [cfg["python"], "-I", "-S", "-c", cfg["harness"]], env)


def main():
    cfg = json.loads(sys.argv[1])
    try:
        build(cfg)
    except OSError as exc:
        sys.stderr.write(f"sandbox set-up failed: {exc}\n")
        os._exit(SETUP_FAILED)
    pid = os.fork()
    if pid == 0:
        try:
            become_candidate(cfg)
        except OSError as exc:
            sys.stderr.write(f"sandbox set-up failed: {exc}\n")
        os._exit(SETUP_FAILED)
    _, status = os.waitpid(pid, 0)
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
