// Runs the reference JavaScript implementation, certlogic-js (npm, Apache-2.0), for side-by-side measurements and
// differential checks. It is executed, never ported: `node certlogic-js.js MODE ...` with NODE_PATH pointing at a
// node_modules folder that holds certlogic-js.
//
//   eval FILE          FILE holds [[expression, data], ...]; prints [{"value": v} | {"error": message}, ...]
//   matrix FILE        FILE holds {"logics": [...], "contexts": [...]}; prints, per context, the list of results of
//                      every logic: [[{"value": v} | {"error": message}, ...], ...]
//   bench DIR SECONDS  evaluates every rule test under DIR (CC/RULE/rule.json + tests/*.json) repeatedly for
//                      SECONDS of CPU time and prints "EVALUATIONS CPU_SECONDS PASSED"
"use strict"
const fs = require("fs")
const path = require("path")
const { evaluate } = require("certlogic-js")
const { isTruthy } = require("certlogic-js/dist/internals")

const attempt = (f) => {
    try {
        return { value: f() }
    } catch (e) {
        return { error: String(e && e.message ? e.message : e) }
    }
}

const readJson = (file) => JSON.parse(fs.readFileSync(file, "utf8").replace(/^\uFEFF/, ""))

const findRuleFiles = (dir, out) => {
    for (const name of fs.readdirSync(dir).sort()) {
        const full = path.join(dir, name)
        if (fs.statSync(full).isDirectory()) {
            findRuleFiles(full, out)
        } else if (name === "rule.json") {
            out.push(full)
        }
    }
    return out
}

const [mode, arg, seconds] = process.argv.slice(2)
if (mode === "eval") {
    const pairs = readJson(arg)
    process.stdout.write(JSON.stringify(pairs.map(([expr, data]) => attempt(() => evaluate(expr, data)))))
} else if (mode === "matrix") {
    const { logics, contexts } = readJson(arg)
    process.stdout.write(JSON.stringify(contexts.map((data) => logics.map((logic) => attempt(() => evaluate(logic, data))))))
} else if (mode === "bench") {
    const cases = []
    for (const ruleFile of findRuleFiles(arg, [])) {
        const rule = readJson(ruleFile)
        const testsDir = path.join(path.dirname(ruleFile), "tests")
        if (!fs.existsSync(testsDir)) continue
        for (const name of fs.readdirSync(testsDir).sort()) {
            if (!name.endsWith(".json")) continue
            const test = readJson(path.join(testsDir, name))
            cases.push([rule.Logic, { payload: test.payload ?? null, external: test.external ?? null }])
        }
    }
    // CPU time (user + system) rather than wall time, as the Rust side measures, so that a busy machine does not
    // distort the comparison.
    const budgetMs = Number(seconds) * 1000
    const start = process.cpuUsage()
    let evaluations = 0
    let passed = 0
    let elapsedMs = 0
    while (elapsedMs < budgetMs) {
        for (const [logic, data] of cases) {
            let ok = false
            try {
                ok = isTruthy(evaluate(logic, data))
            } catch (e) {
                ok = false
            }
            if (ok) passed++
            evaluations++
        }
        const used = process.cpuUsage(start)
        elapsedMs = (used.user + used.system) / 1000
    }
    process.stdout.write(`${evaluations} ${elapsedMs / 1000} ${passed}\n`)
} else {
    process.stderr.write(`unknown mode ${mode}\n`)
    process.exit(2)
}
