"""What the gateway runs on an SSH host: POSIX sh text built here, and the parse of its answers.

Pure: no connection, no asyncio, so the quoting and the framing are testable on their own.

Each task lives in `<state dir>/<pod uid>/<container index>/<restart>/` on the host:

- a supervisor `sh` in its own session (`setsid -f`), so it survives the SSH connection, starts
  the program with `setsid` (its own session and process group, pgid = its pid, written to
  `pgid`), appends its stdout/stderr to `stdout`/`stderr`, waits for it and writes its status to
  `exit` (write then rename, so a reader sees the whole number or nothing);
- `sup` holds the supervisor's pid and `boot` the host's boot id at start: after a reboot a task
  without `exit` is lost, whatever pid now has that number;
- `acked` holds how far the gateway's logs have each stream on disk, so a restarted gateway
  reads on from there (the log's own offsets drop any part it already has).

Every value reaches the remote shell through `shlex.quote`, so an argument with spaces, quotes,
`$()` or `;` arrives as one argument and runs nothing.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Exit status of the launcher when workingDir does not exist on the host.
NO_WORKDIR_STATUS = 3
# Exit status of the launcher when the supervisor did not report the program's pgid in time.
NO_PGID_STATUS = 4
# How long the launcher waits for the supervisor to report the pgid (tenths of a second).
PGID_WAIT_TENTHS = 100

STREAMS = ("stdout", "stderr")

# The supervisor: $1 is the task directory, the rest the program's argv (after `env` and its
# assignments). Runs in its own session; not killed with the program (another process group),
# so it always records how the program ended.
_SUPERVISOR = r"""d=$1; shift
echo $$ > "$d/sup"
setsid "$@" </dev/null >>"$d/stdout" 2>>"$d/stderr" &
pg=$!
echo "$pg" > "$d/pgid.tmp" && mv -f "$d/pgid.tmp" "$d/pgid"
wait "$pg"
echo $? > "$d/exit.tmp" && mv -f "$d/exit.tmp" "$d/exit"
"""

# Reads one stream of one task from an offset, at most a limit: a header, then exactly n bytes.
_READ_FN = r"""r() {
  [ -f "$1/$2" ] || return 0
  s=$(wc -c < "$1/$2") || return 0
  n=$((s - $3)); [ "$n" -gt "$4" ] && n=$4
  [ "$n" -gt 0 ] || return 0
  printf 'O %s %s %s %s\n' "$1" "$2" "$3" "$n"
  tail -c +$(($3 + 1)) "$1/$2" | head -c "$n"
}
"""

# One line per task directory. `exit` is checked before the supervisor, and again after it,
# so a task ending between the two checks is never taken for lost.
_LIST = r"""b=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo none)
for d in */*/*; do
  [ -d "$d" ] || continue
  st=run; code=-
  if [ -f "$d/exit" ]; then st=exit; code=$(cat "$d/exit")
  elif [ -f "$d/sup" ]; then
    if [ "$(cat "$d/boot" 2>/dev/null)" != "$b" ] || ! kill -0 "$(cat "$d/sup")" 2>/dev/null
    then
      if [ -f "$d/exit" ]; then st=exit; code=$(cat "$d/exit"); else st=lost; fi
    fi
  fi
  o=0; e=0; ao=0; ae=0
  [ -f "$d/stdout" ] && o=$(wc -c < "$d/stdout")
  [ -f "$d/stderr" ] && e=$(wc -c < "$d/stderr")
  [ -f "$d/acked" ] && read -r ao ae < "$d/acked"
  printf 'T %s %s %s %s %s %s %s\n' "$d" "$st" "$code" "$o" "$e" "$ao" "$ae"
done
"""

END_MARK = b"END\n"


def q(text: str) -> str:
    return shlex.quote(text)


def launch_script(
    state_dir: str,
    task_id: str,
    argv: Sequence[str],
    env: Sequence[tuple[str, str]],
    working_dir: str = "",
) -> str:
    """Start the task if it is not started yet; prints the program's pgid."""
    assignments = [q(f"{name}={value}") for name, value in env]
    program = " ".join(q(part) for part in argv)
    cd = (
        f"cd -- {q(working_dir)} 2>/dev/null || {{ printf "
        f"'workingDir %s is not a directory on the host\\n' {q(working_dir)} >&2; "
        f"exit {NO_WORKDIR_STATUS}; }}\n"
        if working_dir
        else ""
    )
    check_wd = cd.replace("cd -- ", "( cd -- ", 1).replace(
        " 2>/dev/null ||", " ) 2>/dev/null ||", 1
    )
    return (
        f"set -e\n"
        f"{check_wd}"
        f"mkdir -p -- {q(state_dir)}/{q(task_id)}\n"
        f"d=$(cd -- {q(state_dir)}/{q(task_id)} && pwd)\n"
        f'if [ ! -f "$d/sup" ]; then\n'
        f"  {cd}"
        f'  cat /proc/sys/kernel/random/boot_id > "$d/boot" 2>/dev/null || echo none > "$d/boot"\n'
        f'  setsid -f sh -c {q(_SUPERVISOR)} wirelet-task "$d" '
        f"env -- {' '.join(assignments)} {program} </dev/null >/dev/null 2>&1\n"
        f"fi\n"
        f"i=0\n"
        f'while [ ! -f "$d/pgid" ]; do\n'
        f"  i=$((i + 1)); [ $i -gt {PGID_WAIT_TENTHS * 10} ] && exit {NO_PGID_STATUS}\n"
        f"  sleep 0.01\n"
        f"done\n"
        f'cat "$d/pgid"\n'
    )


def signal_script(state_dir: str, task_id: str, signal: str) -> str:
    """Signal the task's process group unless it has exited; a no-op for an unknown task."""
    d = f"{q(state_dir)}/{q(task_id)}"
    return (
        f"[ -f {d}/exit ] && exit 0\n"
        f"pg=$(cat {d}/pgid 2>/dev/null) || exit 0\n"
        f'env kill -s {signal} -- "-$pg" 2>/dev/null\n'
        f"exit 0\n"
    )


def alive_script(state_dir: str, task_id: str) -> str:
    """Prints how many processes of the task's process group are alive (for checks)."""
    d = f"{q(state_dir)}/{q(task_id)}"
    # Zombies are not counted: a killed child waits for its (foreign) reaper, not for us.
    return (
        f"pg=$(cat {d}/pgid 2>/dev/null) || {{ echo 0; exit 0; }}\n"
        f"ps -e -o pgid= -o stat= | awk -v pg=\"$pg\" '$1 == pg && $2 !~ /^Z/' | wc -l\n"
    )


@dataclass(frozen=True)
class ReadRequest:
    task_id: str
    stream: str
    offset: int
    limit: int


def poll_script(
    state_dir: str,
    *,
    acks: Iterable[tuple[str, int, int]] = (),
    removals: Iterable[str] = (),
    reads: Iterable[ReadRequest] = (),
) -> str:
    """One round trip: record acknowledged offsets, remove finished tasks, list every task,
    then read output. Ends with END so a cut-off answer is never taken for a whole one."""
    lines = [f"cd -- {q(state_dir)} 2>/dev/null || {{ printf 'END\\n'; exit 0; }}"]
    for task_id, out, err in acks:
        if (task_id_ok(task_id)) and out >= 0 and err >= 0:
            t = q(task_id)
            lines.append(
                f"[ -d {t} ] && printf '%s %s\\n' {out} {err} > {t}/acked.tmp "
                f"&& mv -f {t}/acked.tmp {t}/acked"
            )
    for task_id in removals:
        if task_id_ok(task_id):
            lines.append(
                f"rm -rf -- {q(task_id)}; rmdir -p -- {q(task_id.rsplit('/', 1)[0])} 2>/dev/null"
            )
    lines.append(_LIST.rstrip("\n"))
    lines.append(_READ_FN.rstrip("\n"))
    for read in reads:
        if task_id_ok(read.task_id) and read.stream in STREAMS:
            lines.append(f"r {q(read.task_id)} {read.stream} {int(read.offset)} {int(read.limit)}")
    lines.append("printf 'END\\n'")
    return "\n".join(lines) + "\n"


def task_id_ok(task_id: str) -> bool:
    """Only ids this gateway makes (`uid/index/restart`): never `..` or an absolute path."""
    parts = task_id.split("/")
    return (
        len(parts) == 3
        and all(parts)
        and all(p not in (".", "..") for p in parts)
        and all(c.isalnum() or c in "-._" for p in parts for c in p)
    )


@dataclass(frozen=True)
class ListedTask:
    task_id: str
    state: str  # "run", "exit" or "lost"
    exit_code: int | None
    sizes: tuple[int, int]  # stdout, stderr bytes on the host when listed
    acked: tuple[int, int]  # what the gateway recorded as durable


@dataclass(frozen=True)
class OutputChunk:
    task_id: str
    stream: str
    offset: int
    data: bytes


class PollAnswerError(ValueError):
    """The host's answer does not have the expected form (cut off, or a foreign shell)."""


@dataclass(frozen=True)
class OutputHeader:
    """`O` line: `size` bytes of output follow it."""

    task_id: str
    stream: str
    offset: int
    size: int


def parse_poll_line(raw: bytes) -> ListedTask | OutputHeader | None:
    """One line of a poll answer (without its newline); None for the END mark."""
    line = raw.decode("utf-8", "replace")
    if line == "END":
        return None
    fields = line.split(" ")
    try:
        if fields[0] == "T" and len(fields) == 8:
            return ListedTask(
                fields[1],
                fields[2],
                None if fields[3] == "-" else int(fields[3]),
                (int(fields[4]), int(fields[5])),
                (int(fields[6]), int(fields[7])),
            )
        if fields[0] == "O" and len(fields) == 5:
            return OutputHeader(fields[1], fields[2], int(fields[3]), int(fields[4]))
    except ValueError:
        pass
    raise PollAnswerError(f"unexpected line in the host's answer: {line[:80]!r}")


def parse_poll(answer: bytes) -> tuple[list[ListedTask], list[OutputChunk]]:
    """A whole poll answer at once (the host reads it line by line, see gateway.ssh.shell)."""
    tasks: list[ListedTask] = []
    chunks: list[OutputChunk] = []
    pos = 0
    while True:
        end = answer.find(b"\n", pos)
        if end < 0:
            raise PollAnswerError("the answer ends without END (cut off)")
        item = parse_poll_line(answer[pos:end])
        pos = end + 1
        if item is None:
            return tasks, chunks
        if isinstance(item, ListedTask):
            tasks.append(item)
            continue
        data = answer[pos : pos + item.size]
        if len(data) != item.size:
            raise PollAnswerError("output cut off")
        pos += item.size
        chunks.append(OutputChunk(item.task_id, item.stream, item.offset, data))


def framed(script: str) -> str:
    """A script for the long-lived shell: run in a subshell (its `cd` and `exit` stay there),
    its output and status sent as `R <status> <bytes>`, the bytes, then END."""
    return (
        f"wirelet_out=$( (\n{script}\n) </dev/null 2>&1 ); wirelet_rc=$?\n"
        f'printf \'R %s %s\\n\' "$wirelet_rc" "$(printf %s "$wirelet_out" | wc -c)"\n'
        f'printf %s "$wirelet_out"\n'
        f"printf 'END\\n'\n"
    )


def streamed(script: str) -> str:
    """A poll script for the long-lived shell: in a subshell, errors dropped (the answer is
    framed by itself and ends with END)."""
    return f"(\n{script}) </dev/null 2>/dev/null\n"


# Facts about the host, one per line: the node's labels and capacity come from them.
PROBE_SCRIPT = r"""uname -s; uname -r; uname -m
nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1
awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0
cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo none
hostname 2>/dev/null || uname -n
for tool in setsid tail head wc; do command -v $tool >/dev/null 2>&1 || echo "missing $tool"; done
echo END
"""


@dataclass(frozen=True)
class HostFacts:
    os: str
    kernel: str
    machine: str
    cpus: int
    memory_bytes: int
    boot_id: str
    hostname: str


# `uname -m` to GOARCH, as Kubernetes names architectures.
_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "riscv64": "riscv64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def k8s_arch(machine: str) -> str:
    if machine.startswith("armv") or machine == "arm":
        return "arm"
    return _ARCH.get(machine, machine or "unknown")


def parse_probe(text: str) -> HostFacts:
    lines = text.splitlines()
    if len(lines) < 8 or lines[-1] != "END":
        raise PollAnswerError(f"unexpected answer to the host probe: {text[:200]!r}")
    missing = [line.split(" ", 1)[1] for line in lines[7:-1] if line.startswith("missing ")]
    if missing:
        raise PollAnswerError(
            f"the host lacks {', '.join(missing)} (util-linux / coreutils); install them"
        )
    try:
        cpus = int(lines[3])
        memory_kib = int(lines[4])
    except ValueError:
        raise PollAnswerError(f"unexpected answer to the host probe: {text[:200]!r}") from None
    return HostFacts(
        os=lines[0].lower(),
        kernel=lines[1],
        machine=lines[2],
        cpus=cpus,
        memory_bytes=memory_kib * 1024,
        boot_id=lines[5],
        hostname=lines[6],
    )
