import sys, subprocess, collections
f, per_req_us = sys.argv[1], float(sys.argv[2])
out = subprocess.run(["perf","script","-i",f,"-F","ip,sym"], capture_output=True, text=True).stdout
cats = collections.Counter(); n=0
order = [("sleep", ("schedule","finish_task_switch","__schedule")),
         ("send", ("tcp_sendmsg","sock_sendmsg","__sys_sendto","sock_write_iter","do_writev","vfs_writev")),
         ("recv", ("tcp_recvmsg","sock_recvmsg","sock_read_iter","vfs_read","__sys_recvfrom")),
         ("epoll", ("ep_poll","do_epoll_wait","ep_send_events","sock_poll","tcp_poll","ep_item_poll")),
         ("uring", ("io_uring","io_submit_sqes","io_poll","io_req","io_issue","tctx_task_work","io_handle_tw","io_cqring","io_recv","io_send","io_buffer","io_")),
         ("syscall", ("do_syscall_64","entry_SYSCALL","syscall_exit","exit_to_user")),
        ]
for block in out.split("\n\n"):
    raw=[l.split(None,1) for l in block.strip().split("\n") if l.strip()]
    if not raw: continue
    n+=1
    if not raw[0][0].startswith("ffffffff"):
        cats["user"]+=1; continue
    lines=[r[1] if len(r)>1 else "" for r in raw]
    kernel_frames = [l for l in lines]
    c=None
    for name, keys in order:
        if any(l.startswith(k) for l in lines for k in keys):
            c=name; break
    cats[c or "other"]+=1
tot=sum(cats.values())
for k,v in cats.most_common(): print(f"{k:8} {v/tot*100:5.1f}% {v/tot*per_req_us:5.2f}us")
