package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A benchProbe reads counters that tell why a slice of BenchmarkCreateEntries1M
// cost what it did; the benchmark reports the difference between two
// readings. A counter the machine does not offer is left out.
type benchProbe interface {
	read(ctx context.Context) (map[string]float64, error)
}

// fileIOProbe reads this process's I/O from /proc/self/io: SQLite reads its
// pages with pread, so read calls and bytes are the page cache's misses
// (served from the kernel's cache or the disk alike).
type fileIOProbe struct{}

func (fileIOProbe) read(context.Context) (map[string]float64, error) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return nil, nil // not Linux: nothing to report
	}
	out := make(map[string]float64)
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/self/io %s: %w", k, err)
		}
		switch k {
		case "syscr":
			out["reads"] = n
		case "rchar":
			out["read-MB"] = n / 1e6
		case "wchar":
			out["write-MB"] = n / 1e6
		}
	}
	return out, nil
}

// pgProbe reads, for the store's own schema, PostgreSQL's buffer reads
// (blocks not found in shared_buffers) and hits and the rows sequential
// scans read, the WAL the server wrote,
// and the CPU time of the server processes: the backends whose
// application_name is app (the benchmark's pool) and, as a second figure,
// every process of the server (the postmaster, its live children and the
// children it reaped: checkpointer, WAL writer, other clients' backends).
// CPU is read from /proc, so only for a server on this machine.
type pgProbe struct {
	db  *sql.DB
	app string
	// seen is the CPU last read per backend PID: a backend that went away
	// keeps its last figure, one that appeared counts from zero.
	seen map[int]float64
}

func (p *pgProbe) read(ctx context.Context) (map[string]float64, error) {
	out := make(map[string]float64)
	var blksRead, blksHit float64
	err := p.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(heap_blks_read + idx_blks_read), 0),
		COALESCE(SUM(heap_blks_hit + idx_blks_hit), 0)
		FROM pg_statio_user_tables WHERE schemaname = current_schema()`).Scan(&blksRead, &blksHit)
	if err != nil {
		return nil, fmt.Errorf("read pg_statio_user_tables: %w", err)
	}
	out["pg-blks-read"], out["pg-blks-hit"] = blksRead, blksHit
	// Rows read by sequential scans: a plan that scans a table per batch
	// shows here, one that uses an index does not.
	var seqRows float64
	err = p.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(seq_tup_read), 0)
		FROM pg_stat_user_tables WHERE schemaname = current_schema()`).Scan(&seqRows)
	if err != nil {
		return nil, fmt.Errorf("read pg_stat_user_tables: %w", err)
	}
	out["pg-seq-rows-read"] = seqRows
	var walBytes float64
	if err := p.db.QueryRowContext(ctx, "SELECT wal_bytes FROM pg_stat_wal").Scan(&walBytes); err != nil {
		return nil, fmt.Errorf("read pg_stat_wal: %w", err)
	}
	out["pg-wal-MB"] = walBytes / 1e6

	rows, err := p.db.QueryContext(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", p.app)
	if err != nil {
		return nil, fmt.Errorf("read pg_stat_activity: %w", err)
	}
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			rows.Close()
			return nil, err
		}
		pids = append(pids, pid)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(pids) == 0 {
		return out, nil
	}
	if _, err := procCPU(pids[0]); err != nil {
		return out, nil // the server runs elsewhere: no CPU figures
	}
	for _, pid := range pids {
		if c, err := procCPU(pid); err == nil {
			p.seen[pid] = c.self
		}
	}
	var backends float64
	for _, c := range p.seen {
		backends += c
	}
	out["pg-backend-cpu-s"] = backends
	st, err := procCPU(pids[0])
	if err != nil {
		return out, nil
	}
	server, err := serverCPU(st.ppid)
	if err != nil {
		return nil, err
	}
	out["pg-server-cpu-s"] = server
	return out, nil
}

type procStat struct {
	ppid int
	self float64 // utime + stime, seconds
	kids float64 // cutime + cstime: children waited for, seconds
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on every
// Linux architecture Go supports).
const clockTicks = 100

// procCPU reads /proc/PID/stat.
func procCPU(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	var n [5]float64
	for j, k := range []int{1, 11, 12, 13, 14} {
		if n[j], err = strconv.ParseFloat(f[k], 64); err != nil {
			return procStat{}, fmt.Errorf("/proc/%d/stat field %d: %w", pid, k+3, err)
		}
	}
	return procStat{ppid: int(n[0]), self: (n[1] + n[2]) / clockTicks, kids: (n[3] + n[4]) / clockTicks}, nil
}

// serverCPU is the CPU time of process root, its reaped children and its
// live children, in seconds.
func serverCPU(root int) (float64, error) {
	st, err := procCPU(root)
	if err != nil {
		return 0, err
	}
	total := st.self + st.kids
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		c, err := procCPU(pid)
		if err != nil || c.ppid != root {
			continue // gone, or not the server's
		}
		total += c.self
	}
	return total, nil
}

// withAppName returns dsn (a URL or key=value string) with application_name set.
func withAppName(dsn, app string) string {
	if strings.Contains(dsn, "://") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		return dsn + sep + "application_name=" + app
	}
	return dsn + " application_name=" + app
}
