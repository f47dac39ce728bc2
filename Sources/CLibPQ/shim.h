#ifndef NEXJOBS_CLIBPQ_SHIM_H
#define NEXJOBS_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#include <poll.h>
/* PG_DIAG_* are character-literal macros Swift does not import. */
static inline int nexjobs_pg_diag_sqlstate(void) { return 'C'; }
static inline int nexjobs_pg_diag_message_primary(void) { return 'M'; }
static inline int nexjobs_pg_diag_message_detail(void) { return 'D'; }
#endif
