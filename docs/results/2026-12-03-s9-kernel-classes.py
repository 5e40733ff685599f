import sys, re, collections
cats = [("recv", r"io_recv|tcp_recvmsg|sock_recvmsg"), ("send", r"io_send|tcp_sendmsg|sock_sendmsg"),
        ("accept", r"io_accept|do_accept|inet_accept"), ("shutdown", r"__sys_shutdown|inet_shutdown|tcp_shutdown"),
        ("close", r"__x64_sys_close|__fput|tcp_close|task_work_run"), ("softirq-rx", r"net_rx_action|__netif_receive|tcp_v4_rcv"),
        ("setsockopt", r"setsockopt"), ("pagefault", r"exc_page_fault"), ("mmap/brk", r"mmap|brk|munmap|madvise"),
        ("timer", r"hrtimer|timerfd"), ("poll arm/wake", r"io_arm_poll|io_poll|__io_queue_proc"),
        ("sched", r"schedule|finish_task_switch|io_cqring_wait"), ("uring submit/complete", r"io_submit_sqes|io_uring|io_req|__io_"),
        ("syscall entry", r"entry_SYSCALL|do_syscall")]
tot=0; t=collections.Counter(); kern=0
stack=[]
def flush():
    global tot,kern
    if not stack: return
    tot+=1
    if "kallsyms" not in stack[0]: return
    kern+=1
    for name,pat in cats:
        if any(re.search(pat, f) for f in stack):
            t[name]+=1; return
    t["other:"+stack[0].split()[1]]+=1
for line in sys.stdin:
    if line.startswith("\t") or line.startswith(" "):
        if line.strip(): stack.append(line.strip()); continue
    if not line.strip():
        flush(); stack=[]; continue
    flush(); stack=[]
flush()
print(f"total samples {tot}, kernel {100*kern/tot:.1f}%")
for k,v in t.most_common(25): print(f"{100*v/tot:6.2f}% {k}")
