-- GET /healthz: the framework floor (no auth, no database).
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
