<?php
/*
 * apcu_bench.php - the per-op workloads of benchmarks/bench.py, in PHP, on APCu.
 *
 * Run by benchmarks/native_peers.py as
 *     php -d apc.enable_cli=1 -d apc.shm_size=... apcu_bench.php '<json config>'
 * The config: {"datasets": [[nkeys, vsize], ...], "reps": R, "target_ns": T,
 *              "min_ops": a, "max_ops": b, "batch_cap": c, "seed": s,
 *              "capacity_key_len": ..., ...}
 *
 * Every loop is timed inside PHP with hrtime(true) (monotonic, ns), around a
 * foreach over a prepared array of keys; the same foreach with an empty body
 * is timed too, so the caller can report per-op figures raw and net of the
 * loop. Nothing of the process start or of the pipe back to Python is timed.
 *
 * Output: one JSON object per line on stdout:
 *   {"nkeys":..,"vsize":..,"op":"get_hit","n":N,"raw":[ns,...],"empty":[ns,...]}
 * where raw/empty hold the total ns of each repetition (N ops each).
 */
declare(strict_types=1);

if (!function_exists('apcu_enabled') || !apcu_enabled()) {
    fwrite(STDERR, "APCu is not enabled (needs php-apcu and -d apc.enable_cli=1)\n");
    exit(2);
}

$cfg = json_decode($argv[1] ?? '{}', true, 512, JSON_THROW_ON_ERROR);

if (isset($cfg['capacity'])) {
    // Fill the cache (run with -d apc.shm_size=64M) with keys of klen bytes
    // and values of vlen bytes until a store fails or APCu expunges (with
    // apc.ttl=0 a full APCu wipes the whole cache instead of failing).
    [$klen, $vlen] = $cfg['capacity'];
    apcu_clear_cache();
    $v = str_repeat('v', (int)$vlen);
    $fmt = '%0' . (int)$klen . 'd';
    $first = sprintf($fmt, 0);
    $count = 0;
    while (true) {
        if (!apcu_store(sprintf($fmt, $count), $v) || !apcu_exists($first)) {
            break;
        }
        $count++;
    }
    echo json_encode(['count' => $count]), "\n";
    exit(0);
}

function key_name(string $prefix, int $i): string
{
    return sprintf('%s:%012d', $prefix, $i);  // 16 bytes, as in bench.py
}

/** $keys repeated (cyclically) to exactly $n entries. */
function cycle(array $keys, int $n): array
{
    $out = [];
    $m = count($keys);
    for ($i = 0; $i < $n; $i++) {
        $out[] = $keys[$i % $m];
    }
    return $out;
}

function loop_empty(array $ops): int
{
    $t0 = hrtime(true);
    foreach ($ops as $k) {
    }
    return hrtime(true) - $t0;
}

function loop_get(array $ops): int
{
    $t0 = hrtime(true);
    foreach ($ops as $k) {
        apcu_fetch($k);
    }
    return hrtime(true) - $t0;
}

function loop_set(array $ops, $v): int
{
    $t0 = hrtime(true);
    foreach ($ops as $k) {
        apcu_store($k, $v);
    }
    return hrtime(true) - $t0;
}

function loop_incr(array $ops): int
{
    $t0 = hrtime(true);
    foreach ($ops as $k) {
        apcu_inc($k, 1);
    }
    return hrtime(true) - $t0;
}

function loop_delete(array $ops): int
{
    $t0 = hrtime(true);
    foreach ($ops as $k) {
        apcu_delete($k);
    }
    return hrtime(true) - $t0;
}

/**
 * Time one repetition of $n ops of kind $op; returns [raw_ns, empty_ns].
 * set_new and delete run in batches of at most count($pool) keys, and undo
 * each batch (untimed) so the table keeps its size.
 */
function one_rep(string $op, int $n, array $pool, string $v): array
{
    switch ($op) {
        case 'get_hit':
        case 'get_miss':
            $ops = cycle($pool, $n);
            return [loop_get($ops), loop_empty($ops)];
        case 'set':
            $ops = cycle($pool, $n);
            return [loop_set($ops, $v), loop_empty($ops)];
        case 'incr':
            $ops = cycle($pool, $n);
            return [loop_incr($ops), loop_empty($ops)];
        case 'set_new':
        case 'delete':
            $raw = 0;
            $empty = 0;
            $left = $n;
            while ($left > 0) {
                $batch = array_slice($pool, 0, min($left, count($pool)));
                if ($op === 'set_new') {
                    $raw += loop_set($batch, $v);
                    foreach ($batch as $k) {
                        apcu_delete($k);
                    }
                } else {
                    $raw += loop_delete($batch);
                    foreach ($batch as $k) {
                        apcu_store($k, $v);
                    }
                }
                $empty += loop_empty($batch);
                $left -= count($batch);
            }
            return [$raw, $empty];
    }
    throw new InvalidArgumentException("unknown op $op");
}

$reps = (int)$cfg['reps'];
$target = (int)$cfg['target_ns'];
$minOps = (int)$cfg['min_ops'];
$maxOps = (int)$cfg['max_ops'];
$batchCap = (int)$cfg['batch_cap'];
mt_srand((int)$cfg['seed']);

foreach ($cfg['datasets'] as [$nkeys, $vsize]) {
    apcu_clear_cache();
    $v = str_repeat('x', (int)$vsize);
    $keys = [];
    for ($i = 0; $i < $nkeys; $i++) {
        $keys[] = key_name('key', $i);
    }
    foreach ($keys as $k) {
        if (!apcu_store($k, $v)) {
            fwrite(STDERR, "apcu_store failed while populating $nkeys x $vsize B\n");
            exit(3);
        }
    }
    // get/set cycle over every key in random order; the other pools (misses,
    // new keys, counters, deletes) hold min(nkeys, batch_cap) keys.
    $m = min($nkeys, $batchCap);
    shuffle($keys);
    $hit = $keys;
    $miss = [];
    $fresh = [];
    $ctr = [];
    for ($i = 0; $i < $m; $i++) {
        $miss[] = key_name('mis', $i);
        $fresh[] = key_name('new', $i);
        $ctr[] = key_name('ctr', $i);
    }
    shuffle($miss);
    shuffle($fresh);
    shuffle($ctr);
    foreach ($ctr as $k) {
        apcu_store($k, 0);
    }
    $pools = [
        'get_hit' => $hit, 'get_miss' => $miss, 'set' => $hit,
        'set_new' => $fresh, 'incr' => $ctr, 'delete' => array_slice($keys, 0, $m),
    ];
    foreach ($pools as $op => $pool) {
        // Calibrate: a short run gives the per-op cost, from which n is
        // chosen so that one repetition lasts about target_ns.
        $probe = min(count($pool), 1000);
        [$raw] = one_rep($op, $probe, $pool, $v);
        $per = max($raw / $probe, 1.0);
        $n = (int)max($minOps, min($maxOps, $target / $per));
        $raws = [];
        $empties = [];
        for ($r = 0; $r < $reps; $r++) {
            [$raw, $empty] = one_rep($op, $n, $pool, $v);
            $raws[] = $raw;
            $empties[] = $empty;
        }
        echo json_encode([
            'nkeys' => $nkeys, 'vsize' => $vsize, 'op' => $op, 'n' => $n,
            'raw' => $raws, 'empty' => $empties,
        ]), "\n";
        flush();
    }
    $info = apcu_cache_info(true);
    if ($info['num_entries'] < $nkeys) {
        fwrite(STDERR, "APCu lost entries (expunged?): {$info['num_entries']} < $nkeys\n");
        exit(4);
    }
}
