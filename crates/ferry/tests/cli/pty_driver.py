"""Runs a command on a fresh pseudo-terminal, as a user at a terminal would, for the CLI tests.

usage: pty_driver.py COLS WAIT_FOR ACTION -- ARGV...

The command gets a pty of COLS columns as its controlling terminal. Once its output contains
WAIT_FOR, ACTION happens: `hup` closes the terminal (the kernel sends SIGHUP), `ctrl-c` types
^C, `type:TEXT` types TEXT and Enter, `none` does nothing. Prints one JSON object: the exit status (`code`, or `signal`), and
everything the command wrote to the terminal (`output`). Kills the command after 60 s.
"""
import fcntl, json, os, pty, select, signal, struct, sys, termios, time

cols, wait_for, action = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
argv = sys.argv[sys.argv.index("--") + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
out, acted, status, open_fd = b"", False, None, True
deadline = time.monotonic() + 60
while time.monotonic() < deadline and status is None:
    if open_fd and select.select([fd], [], [], 0.1)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        out += chunk
    elif not open_fd:
        time.sleep(0.05)
    if not acted and wait_for in out:
        acted = True
        if action == "hup":
            os.close(fd)
            open_fd = False
        elif action == "ctrl-c":
            os.write(fd, b"\x03")
        elif action.startswith("type:"):
            os.write(fd, action[len("type:"):].encode() + b"\n")
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = st
while open_fd and select.select([fd], [], [], 0.1)[0]:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
if status is None:
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
result = {"output": out.decode("utf-8", "replace"), "acted": acted, "timed_out": time.monotonic() >= deadline}
if os.WIFEXITED(status):
    result["code"] = os.WEXITSTATUS(status)
else:
    result["signal"] = os.WTERMSIG(status)
print(json.dumps(result))
