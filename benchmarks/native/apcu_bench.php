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

/* ------------------------------------------------------------------
 * Feature ops (bench.py --only features): the same pools as
 * benchmarks/features.py, on the operations APCu has natively:
 * apcu_add (new / existing key), apcu_cas, apcu_entry (setdefault),
 * apcu_inc on a missing key (it creates the counter at 0 + step, as
 * incr(k, 1, init=0) does), apcu_fetch / apcu_store of an array of 10 keys.
 * Run with {"features": [nkeys, vsize], "reps": .., ...}.
 */

function loop_add(array $ops, $v): int
{
    $t0 = hrtime(true);
    foreach ($ops as $k) {
        apcu_add($k, $v);
    }
    return hrtime(true) - $t0;
}

function loop_cas(array $ops): int
{
    $t0 = hrtime(true);
    foreach ($ops as $k) {
        apcu_cas($k, 0, 0);
    }
    return hrtime(true) - $t0;
}

function loop_entry(array $ops, callable $gen): int
{
    $t0 = hrtime(true);
    foreach ($ops as $k) {
        apcu_entry($k, $gen);
    }
    return hrtime(true) - $t0;
}

function loop_fetch_many(array $ops): int
{
    $t0 = hrtime(true);
    foreach ($ops as $ks) {
        apcu_fetch($ks);
    }
    return hrtime(true) - $t0;
}

function loop_store_many(array $ops): int
{
    $t0 = hrtime(true);
    foreach ($ops as $m) {
        apcu_store($m);
    }
    return hrtime(true) - $t0;
}

/**
 * One repetition of a feature op: [raw_ns, empty_ns]. With an $undo, the
 * op runs in batches of at most count($pool) items, each undone untimed.
 */
function feature_rep(callable $loop, int $n, array $pool, ?callable $undo): array
{
    if ($undo === null) {
        $ops = cycle($pool, $n);
        return [$loop($ops), loop_empty($ops)];
    }
    $raw = 0;
    $empty = 0;
    $left = $n;
    while ($left > 0) {
        $batch = array_slice($pool, 0, min($left, count($pool)));
        $raw += $loop($batch);
        $undo($batch);
        $empty += loop_empty($batch);
        $left -= count($batch);
    }
    return [$raw, $empty];
}

function feature_check(bool $ok, string $what): void
{
    if (!$ok) {
        echo json_encode(['error' => "APCu check failed: $what"]), "\n";
    }
}

function run_features(array $cfg): void
{
    [$nkeys, $vsize] = $cfg['features'];
    $nkeys = (int)$nkeys;
    $vsize = (int)$vsize;
    $reps = (int)$cfg['reps'];
    $target = (int)$cfg['target_ns'];
    $minOps = (int)$cfg['min_ops'];
    $maxOps = (int)$cfg['max_ops'];
    $m = min($nkeys, (int)$cfg['batch_cap']);
    mt_srand((int)$cfg['seed']);
    apcu_clear_cache();
    $v = str_repeat('x', $vsize);
    $keys = [];
    for ($i = 0; $i < $nkeys; $i++) {
        $keys[] = key_name('key', $i);
        apcu_store($keys[$i], $v);
    }
    shuffle($keys);
    $fresh = [];
    $ctr = [];
    $ini = [];
    for ($i = 0; $i < $m; $i++) {
        $fresh[] = key_name('new', $i);
        $ctr[] = key_name('ctr', $i);
        $ini[] = key_name('ini', $i);
        apcu_store($ctr[$i], 0);
    }
    shuffle($fresh);
    shuffle($ctr);
    shuffle($ini);
    $batches = array_chunk($keys, 10);
    if (count(end($batches)) < 10) {
        array_pop($batches);
    }
    $maps = [];
    foreach ($batches as $b) {
        $maps[] = array_fill_keys($b, $v);
    }
    $gen = fn(string $k) => $v;
    $delete = function (array $ks): void {
        foreach ($ks as $k) {
            apcu_delete($k);
        }
    };

    // Each call once, for the result it must give.
    feature_check(apcu_add('chk:000000000000', $v) === true, 'apcu_add(new key)');
    feature_check(apcu_add('chk:000000000000', 'o') === false, 'apcu_add(existing key)');
    feature_check(apcu_cas($ctr[0], 0, 0) === true, 'apcu_cas(k, 0, 0) on 0');
    feature_check(apcu_entry($keys[0], $gen) === $v, 'apcu_entry(existing key)');
    feature_check(apcu_inc('chk:000000000001', 1) === 1, 'apcu_inc(missing key)');
    feature_check(apcu_fetch($batches[0]) === array_fill_keys($batches[0], $v), 'apcu_fetch(10 keys)');
    feature_check(apcu_store($maps[0]) === [], 'apcu_store(10 keys)');
    apcu_delete('chk:000000000000');
    apcu_delete('chk:000000000001');

    $ops = [
        'add_new' => [fn(array $o) => loop_add($o, $v), $fresh, $delete],
        'add_exists' => [fn(array $o) => loop_add($o, $v), $keys, null],
        'cas' => [fn(array $o) => loop_cas($o), $ctr, null],
        'setdefault' => [fn(array $o) => loop_entry($o, $gen), $keys, null],
        'incr_init' => [fn(array $o) => loop_incr($o), $ini, $delete],
        'get_many' => [fn(array $o) => loop_fetch_many($o), $batches, null],
        'set_many' => [fn(array $o) => loop_store_many($o), $maps, null],
    ];
    foreach ($ops as $op => [$loop, $pool, $undo]) {
        $probe = min(count($pool), 1000);
        [$raw] = feature_rep($loop, $probe, $pool, $undo);
        $per = max($raw / $probe, 1.0);
        $n = (int)max($minOps, min($maxOps, $target / $per));
        $raws = [];
        $empties = [];
        for ($r = 0; $r < $reps; $r++) {
            [$raw, $empty] = feature_rep($loop, $n, $pool, $undo);
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
    feature_check($info['num_entries'] === $nkeys + $m, "entries after the feature ops: {$info['num_entries']}");
    feature_check(apcu_fetch($ctr[0]) === 0, 'a cas counter after the feature ops');
}

if (isset($cfg['features'])) {
    run_features($cfg);
    exit(0);
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
