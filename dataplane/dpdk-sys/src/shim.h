/* The DPDK headers bindgen reads, and one shim function per static-inline function or macro the
 * Rust side uses. Each shim is named `sy_` + DPDK's name and is re-exported under DPDK's own name
 * by lib.rs. */
#ifndef SWITCHYARD_DPDK_SHIM_H
#define SWITCHYARD_DPDK_SHIM_H

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_thash.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_version.h>
#include <rte_telemetry.h>
#include <rte_pcapng.h>

/* rte_errno is a per-lcore (thread-local) variable behind a macro. */
int sy_rte_errno(void);

unsigned sy_rte_lcore_id(void);

uint16_t sy_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
                             uint16_t nb_pkts);
uint16_t sy_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
                             uint16_t nb_pkts);

struct rte_mbuf *sy_rte_pktmbuf_alloc(struct rte_mempool *mp);
void sy_rte_pktmbuf_free(struct rte_mbuf *m);
void sy_rte_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count);
char *sy_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
/* The first segment in one call: returns rte_pktmbuf_mtod(m, void *) and sets *data_len to
 * rte_pktmbuf_data_len(m). */
void *sy_rte_pktmbuf_first_seg(const struct rte_mbuf *m, uint16_t *data_len);
int sy_rte_pktmbuf_chain(struct rte_mbuf *head, struct rte_mbuf *tail);
/* rte_pktmbuf_pkt_len(m) */
uint32_t sy_rte_pktmbuf_pkt_len(const struct rte_mbuf *m);
int sy_rte_pktmbuf_is_contiguous(const struct rte_mbuf *m);

/* The offload flags of an mbuf (m->ol_flags: RTE_MBUF_F_*). */
uint64_t sy_rte_mbuf_ol_flags(const struct rte_mbuf *m);
/* Asks the port for checksums on transmit: sets m->ol_flags |= flags, m->l2_len, m->l3_len. */
void sy_rte_mbuf_tx_offload(struct rte_mbuf *m, uint64_t flags, uint8_t l2_len, uint16_t l3_len);
uint16_t sy_rte_eth_tx_prepare(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
                               uint16_t nb_pkts);

/* The TSC (rte_rdtsc); rte_get_tsc_hz gives its rate. */
uint64_t sy_rte_rdtsc(void);

/* Toeplitz hash of `input_len` 32-bit words in host order (rte_thash.h). */
uint32_t sy_rte_softrss(uint32_t *input_tuple, uint32_t input_len, const uint8_t *rss_key);

#endif
