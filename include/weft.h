/*
 * weft.h - the umbrella header: includes every public weft header.
 *
 * weft brings Python's concurrency toolbox (threading, concurrent.futures,
 * multiprocessing, asyncio) to C as one runtime. See docs/ for the guide.
 */
#ifndef WEFT_H
#define WEFT_H

#include <weft/version.h>
#include <weft/error.h>
#include <weft/time.h>
#include <weft/sync.h>
#include <weft/thread.h>
#include <weft/chan.h>
#include <weft/future.h>
#include <weft/pool.h>
#include <weft/par.h>
#include <weft/tune.h>
#include <weft/loop.h>
#include <weft/co.h>
#include <weft/net.h>

#endif /* WEFT_H */
