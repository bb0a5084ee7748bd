// runtime/engine/scheduler.cc: see scheduler.h.
// Fault point "preempt_storm" (runtime/core/fault_injection.h): when it fires, schedule() first
// preempts the oldest running sequence that has one token left to compute and has grown since its
// last storm preemption, exactly as running out of blocks would. Oldest, so repeated firings rotate
// over every sequence (the victim re-enters running_ at the back); grown since, so every storm
// cycle yields at least one token (a recompute chunked by the token budget can stop one token short
// of the end, which looks like decoding: without the rule that would livelock).
#include "runtime/engine/scheduler.h"

#include <algorithm>

#include "eli/error.h"
#include "runtime/core/fault_injection.h"

namespace eli {

Scheduler::Scheduler(const SchedulerConfig& config, BlockPool& pool, BlockPool* pool1)
    : config_(config), pool_(pool), pool1_(pool1) {
  ELI_CHECK(config.block_size > 0 && config.max_num_seqs > 0 && config.max_num_batched_tokens > 0,
            "scheduler limits must be positive");
  ELI_CHECK(config.block_hash != nullptr, "scheduler needs a block hash function");
  const KvGroups& g = config.kv_groups;
  ELI_CHECK(g.n_groups() >= 1 && g.n_groups() <= kMaxKvGroups, "bad KV group count ", g.n_groups());
  ELI_CHECK((g.n_groups() == 2) == (pool1 != nullptr), "KV group 1 needs its own pool (and only it)");
  ELI_CHECK(g.n_groups() == 1 || g.window[0] == 0, "with two KV groups, group 0 attends to the full context");
  load_faults_from_env();
}

void Scheduler::set_host_prefix_cache(HostPrefixCache* cache) {
  ELI_CHECK_ARG(cache == nullptr || (config_.enable_prefix_caching && n_groups() == 1 && config_.kv_groups.window[0] == 0),
                "the host-tier prefix cache needs prefix caching and a model without sliding-window layers");
  host_prefix_ = cache;
  if (cache == nullptr) {
    pool_.set_evict_hook(nullptr);
    return;
  }
  pool_.set_evict_hook([this](int32_t b) {
    host_prefix_->offer(b, pool_.cache_hash(b), pool_.cache_serial(b), pool_.cache_parent_serial(b),
                        pool_.cached_tokens(b));
  });
}

uint64_t Scheduler::kv_bytes_to_host() const {
  return kv_bytes_to_host_ + (host_prefix_ ? host_prefix_->bytes_to_host() : 0);
}

uint64_t Scheduler::kv_bytes_from_host() const {
  return kv_bytes_from_host_ + (host_prefix_ ? host_prefix_->bytes_from_host() : 0);
}

uint64_t Scheduler::kv_bytes_to_disk() const { return host_prefix_ ? host_prefix_->bytes_to_disk() : 0; }

uint64_t Scheduler::kv_bytes_from_disk() const { return host_prefix_ ? host_prefix_->bytes_from_disk() : 0; }

void Scheduler::add(Sequence* seq) {
  seq->state = SeqState::kWaiting;
  waiting_.push_back(seq);
}

void Scheduler::release_blocks(Sequence* seq) {
  for (int g = 0; g < n_groups(); ++g) {
    std::vector<int32_t>& t = seq->table(g);
    std::vector<int32_t> held(t.begin() + std::min<int64_t>(seq->n_dropped[g], t.size()), t.end());
    // Tail first: the end of a chain is evicted before its head, which later prompts share more.
    if (config_.enable_prefix_caching) std::reverse(held.begin(), held.end());
    pool(g).release(held);
    t.clear();
    seq->n_dropped[g] = 0;
  }
  seq->n_cached_blocks = 0;
  seq->n_cached_blocks1 = 0;
  seq->prefix_cache_stopped = false;
}

void Scheduler::drop_dead_blocks(Sequence* seq) {
  const int64_t B = config_.block_size;
  for (int g = 0; g < n_groups(); ++g) {
    std::vector<int32_t>& t = seq->table(g);
    int64_t dead = std::min<int64_t>(config_.kv_groups.dead_blocks(g, seq->num_computed, B), t.size());
    // While caching, a block is dropped only once it was offered to the prefix cache (a later
    // prompt sharing the prefix then finds it).
    if (config_.enable_prefix_caching && !seq->prefix_cache_stopped) {
      dead = std::min(dead, g == 0 ? seq->n_cached_blocks : seq->n_cached_blocks1);
    }
    for (; seq->n_dropped[g] < dead; ++seq->n_dropped[g]) pool(g).release({t[static_cast<size_t>(seq->n_dropped[g])]});
  }
}

void Scheduler::release_host_slots(Sequence* seq) {
  for (int g = 0; g < kMaxKvGroups; ++g) {
    if (!seq->host_slots[g].empty()) host_->release(g, seq->host_slots[g]);
    seq->host_slots[g].clear();
  }
  if (seq->swapped_len > 0) seq->n_dropped[0] = seq->n_dropped[1] = 0;
  seq->swapped_len = 0;
}

bool Scheduler::try_swap_out(Sequence* seq) {
  if (host_ == nullptr || seq->num_computed <= 0) return false;
  const int64_t len = std::min<int64_t>(blocks_for(seq->num_computed), static_cast<int64_t>(seq->blocks.size()));
  if (len <= 0) return false;
  int64_t held[kMaxKvGroups] = {0, 0};
  uint64_t bytes = 0;
  for (int g = 0; g < n_groups(); ++g) {
    held[g] = std::max<int64_t>(0, len - seq->n_dropped[g]);
    if (host_->n_free(g) < held[g]) return false;  // no room: recompute
    bytes += host_->slot_bytes(g) * static_cast<uint64_t>(held[g]);
  }
  if (!config_.swap_cost.favours_swap(bytes, seq->num_computed)) return false;
  int64_t dropped[kMaxKvGroups] = {0, 0};
  for (int g = 0; g < n_groups(); ++g) {
    dropped[g] = len - held[g];
    const std::vector<int32_t>& t = seq->table(g);
    const std::vector<int32_t> blocks(t.begin() + dropped[g], t.begin() + len);
    std::vector<int32_t> slots;
    ELI_CHECK_KIND(kInternal, host_->allocate(g, held[g], &slots), "host KV slots vanished");
    seq->host_slots[g] = std::move(slots);
    kv_bytes_to_host_ += host_->copy_out(g, blocks, seq->host_slots[g]);
  }
  release_blocks(seq);  // drops this sequence's references only: shared blocks stay for others
  for (int g = 0; g < n_groups(); ++g) seq->n_dropped[g] = dropped[g];
  seq->swapped_len = len;
  ++swaps_out_;
  return true;
}

void Scheduler::swap_in(Sequence* seq) {
  for (int g = 0; g < n_groups(); ++g) {
    std::vector<int32_t> fresh;
    const int64_t n = static_cast<int64_t>(seq->host_slots[g].size());
    ELI_CHECK_KIND(kInternal, n == seq->swapped_len - seq->n_dropped[g], "swapped KV of group ", g, " is inconsistent");
    ELI_CHECK_KIND(kInternal, pool(g).allocate(n, &fresh), "KV blocks vanished during swap-in");
    kv_bytes_from_host_ += host_->copy_in(g, seq->host_slots[g], fresh);
    host_->release(g, seq->host_slots[g]);
    seq->host_slots[g].clear();
    std::vector<int32_t>& t = seq->table(g);
    // Entries before n_dropped are placeholders no kernel reads (filled in by the caller's fix-up).
    t.assign(static_cast<size_t>(seq->n_dropped[g]), fresh.empty() ? 0 : fresh.front());
    t.insert(t.end(), fresh.begin(), fresh.end());
  }
  seq->swapped_len = 0;
  ++swaps_in_;
}

void Scheduler::remove(Sequence* seq) {
  auto w = std::find(waiting_.begin(), waiting_.end(), seq);
  if (w != waiting_.end()) waiting_.erase(w);
  auto r = std::find(running_.begin(), running_.end(), seq);
  if (r != running_.end()) running_.erase(r);
  release_host_slots(seq);
  release_blocks(seq);
  seq->state = SeqState::kFinished;
  if (!storm_len_.empty()) storm_len_.erase(seq);
}

bool Scheduler::grow_blocks(Sequence* seq, int64_t n_tokens) {
  const int64_t need = blocks_for(n_tokens) - static_cast<int64_t>(seq->blocks.size());
  if (need <= 0) return true;
  for (int g = 0; g < n_groups(); ++g) {
    if (pool(g).n_free() < need) return false;
  }
  for (int g = 0; g < n_groups(); ++g) {
    ELI_CHECK(pool(g).allocate(need, &seq->table(g)), "KV blocks of group ", g, " vanished");
  }
  return true;
}

void Scheduler::preempt(Sequence* seq) {
  auto r = std::find(running_.begin(), running_.end(), seq);
  if (r != running_.end()) running_.erase(r);
  if (!try_swap_out(seq)) {
    release_blocks(seq);
    seq->num_computed = 0;  // recompute (or find in the prefix cache) prompt + generated tokens later
  }
  seq->state = SeqState::kWaiting;
  waiting_.push_front(seq);
  ++preemptions_;
}

Scheduler::PrefixHit Scheduler::lookup_prefix(const Sequence& seq) const {
  PrefixHit hit;
  const int64_t B = config_.block_size;
  const int64_t max_blocks = (seq.n_tokens() - 1) / B;  // at least one token left to compute
  std::vector<uint64_t> serials;
  uint64_t parent_hash = prefix_root_hash(seq.params.cache_salt), parent_serial = 0;
  std::vector<uint64_t> hashes;
  for (int64_t i = 0; i < max_blocks; ++i) {
    const int32_t* toks = seq.tokens.data() + i * B;
    const uint64_t h = config_.block_hash(parent_hash, toks, B);
    const int32_t b = pool_.find_cached(h, parent_serial, toks, B);
    if (b < 0) break;
    hit.blocks[0].push_back(b);
    hashes.push_back(h);
    parent_hash = h;
    parent_serial = pool_.cache_serial(b);
    serials.push_back(parent_serial);
  }
  int64_t n = static_cast<int64_t>(hit.blocks[0].size());
  if (host_prefix_ != nullptr) {
    // The chain goes on in the host tier and on disk (one full-attention group: no window rules
    // below), with at most max_staged() disk entries (what one admission can stage).
    int64_t n_disk = 0;
    for (int64_t i = n; i < max_blocks; ++i) {
      const int32_t* toks = seq.tokens.data() + i * B;
      const uint64_t h = config_.block_hash(parent_hash, toks, B);
      const HostPrefixCache::Ref r = host_prefix_->lookup(h, parent_serial, toks, B);  // host, else disk
      if (r.slot < 0 || (r.on_disk && ++n_disk > host_prefix_->max_staged())) break;
      hit.host.push_back(r.slot);
      hit.on_disk.push_back(r.on_disk);
      parent_hash = h;
      parent_serial = r.serial;
    }
    hit.n = n + static_cast<int64_t>(hit.host.size());
    return hit;
  }
  if (n_groups() == 2 && n > 0) {
    // Group 1's block j is keyed by group 0's verified entry j; shorten the hit until the blocks
    // of the window before its end are all there.
    std::vector<int32_t> found(static_cast<size_t>(n), -1);
    for (int64_t j = 0; j < n; ++j) {
      found[j] = pool1_->find_cached(hashes[j], serials[j], seq.tokens.data() + j * B, B);
    }
    for (; n > 0; --n) {
      const int64_t first = config_.kv_groups.dead_blocks(1, n * B, B);
      bool all = true;
      for (int64_t j = first; j < n && all; ++j) all = found[j] >= 0;
      if (all) break;
    }
    hit.blocks[0].resize(static_cast<size_t>(n));
    hit.blocks[1].assign(found.begin(), found.begin() + n);
  }
  hit.n = n;
  for (int g = 0; g < n_groups(); ++g) hit.first_live[g] = config_.kv_groups.dead_blocks(g, n * B, B);
  return hit;
}

bool Scheduler::read_disk_hits(PrefixHit* hit) {
  std::vector<int32_t> disk;
  size_t first = hit->host.size();
  for (size_t j = 0; j < hit->host.size(); ++j) {
    if (!hit->on_disk[j]) continue;
    if (disk.empty()) first = j;
    disk.push_back(hit->host[j]);
  }
  if (disk.empty()) return true;
  const int64_t ok = host_prefix_->stage_from_disk(disk);
  if (ok == static_cast<int64_t>(disk.size())) return true;
  // Entry `ok` could not be read: the hit ends before it (its blocks and the rest are recomputed).
  size_t keep = first;
  for (int64_t k = 0; keep < hit->host.size(); ++keep) {
    if (hit->on_disk[keep] && k++ == ok) break;
  }
  hit->n -= static_cast<int64_t>(hit->host.size() - keep);
  hit->host.resize(keep);
  hit->on_disk.resize(keep);
  return false;
}

void Scheduler::cache_full_blocks(Sequence* seq, int64_t limit) {
  if (!config_.enable_prefix_caching || seq->prefix_cache_stopped) return;
  const int64_t B = config_.block_size;
  const int64_t n_full =
      std::min<int64_t>(std::min(seq->num_computed, limit) / B, static_cast<int64_t>(seq->blocks.size()));
  while (seq->n_cached_blocks < n_full) {
    const int64_t i = seq->n_cached_blocks;
    if (i < seq->n_dropped[0]) {  // released before it could be offered: the chain ends here
      seq->prefix_cache_stopped = true;
      return;
    }
    uint64_t parent_hash = prefix_root_hash(seq->params.cache_salt), parent_serial = 0;
    if (i > 0) {
      const int32_t parent = seq->blocks[static_cast<size_t>(i - 1)];
      parent_hash = pool_.cache_hash(parent);
      parent_serial = pool_.cache_serial(parent);
    }
    const int32_t* toks = seq->tokens.data() + i * B;
    const uint64_t h = config_.block_hash(parent_hash, toks, B);
    if (!pool_.cache_block(seq->blocks[static_cast<size_t>(i)], h, parent_serial, toks, B)) {
      // Another block holds this hash (the same tokens computed concurrently, or a collision):
      // this chain stays private from here on.
      seq->prefix_cache_stopped = true;
      return;
    }
    ++seq->n_cached_blocks;
  }
  if (n_groups() < 2) return;
  // Group 1: block j is offered under group 0's entry j (its hash and serial); one that is taken
  // already (the same block computed by another sequence) or already dropped is skipped.
  const int64_t n1 = std::min(seq->n_cached_blocks, n_full);
  for (; seq->n_cached_blocks1 < n1; ++seq->n_cached_blocks1) {
    const int64_t j = seq->n_cached_blocks1;
    if (j < seq->n_dropped[1]) continue;
    const int32_t b0 = seq->blocks[static_cast<size_t>(j)];
    pool1_->cache_block(seq->blocks1[static_cast<size_t>(j)], pool_.cache_hash(b0), pool_.cache_serial(b0),
                        seq->tokens.data() + j * B, B);
  }
}

std::vector<ScheduledSeq> Scheduler::schedule() {
  std::vector<ScheduledSeq> out;
  int64_t budget = config_.max_num_batched_tokens;

  if (!running_.empty() && fault_fires(FaultPoint::kPreemptStorm)) {
    auto victim = std::find_if(running_.begin(), running_.end(), [this](const Sequence* s) {
      auto it = storm_len_.find(s);
      return s->num_computed + 1 == s->n_tokens() && (it == storm_len_.end() || s->n_tokens() > it->second);
    });
    if (victim != running_.end()) {
      storm_len_[*victim] = (*victim)->n_tokens();
      preempt(*victim);
    }
  }

  // 1. Running sequences, oldest first: decodes and continuing prefill chunks.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence* seq = running_[i];
    drop_dead_blocks(seq);
    int64_t n_new = std::min(seq->n_tokens() - seq->num_computed, budget);
    if (n_new <= 0) {
      ++i;
      continue;
    }
    bool placed = false;
    while (!(placed = grow_blocks(seq, seq->num_computed + n_new))) {
      Sequence* victim = running_.back();
      // Undo anything already scheduled for the victim this step.
      auto it = std::find_if(out.begin(), out.end(), [&](const ScheduledSeq& s) { return s.seq == victim; });
      if (it != out.end()) {
        budget += it->n_new;
        out.erase(it);
      }
      preempt(victim);
      if (victim == seq) break;
    }
    if (!placed) continue;  // seq preempted itself; running_[i] is now the next one
    out.push_back({seq, n_new, seq->num_computed + n_new == seq->n_tokens()});
    budget -= n_new;
    ++i;
  }

  // 2. Waiting sequences, first come first served, while budget, sequence slots and blocks last.
  const int64_t B = config_.block_size;
  while (!waiting_.empty() && budget > 0 && static_cast<int64_t>(running_.size()) < config_.max_num_seqs) {
    Sequence* seq = waiting_.front();
    PrefixHit hit;
    const bool lookup = config_.enable_prefix_caching && seq->num_computed == 0 && seq->blocks.empty();
    if (lookup) hit = lookup_prefix(*seq);
    // Whether seq can be admitted with `h` (blocks, budget); sets what it computes.
    const bool swapped = seq->swapped_len > 0;
    int64_t computed = 0, n_new = 0;
    auto admissible = [&](const PrefixHit& h) {
      computed = seq->num_computed + h.n * B;
      const int64_t remaining = seq->n_tokens() - computed;
      if (!config_.enable_chunked_prefill && remaining > budget) {
        // Unchunked: a prompt runs whole. One larger than the whole budget still runs alone.
        if (!out.empty() || remaining <= config_.max_num_batched_tokens) return false;
      }
      n_new = config_.enable_chunked_prefill ? std::min(remaining, budget) : remaining;
      // Blocks to allocate beyond the hits (in every group); hit blocks that are free leave the free
      // queue first. Hits out of a windowed group's window are not taken.
      // A swapped-out sequence needs its held blocks back (not a windowed group's dropped ones).
      const int64_t need = blocks_for(computed + n_new) - static_cast<int64_t>(seq->blocks.size()) - h.n;
      for (int g = 0; g < n_groups(); ++g) {
        const std::vector<int32_t>& hb = h.blocks[g];
        const int64_t free_hits = std::count_if(hb.begin() + std::min<int64_t>(h.first_live[g], hb.size()), hb.end(),
                                                [&](int32_t b) { return pool(g).refcount(b) == 0; });
        // Host and disk hits need fresh device blocks too.
        const int64_t host_blocks = g == 0 ? static_cast<int64_t>(h.host.size()) : 0;
        if (need + host_blocks - (swapped ? seq->n_dropped[g] : 0) > pool(g).n_free() - free_hits) return false;
      }
      return true;
    };
    if (!admissible(hit)) break;  // no preemption for new work
    if (!read_disk_hits(&hit) && !admissible(hit)) break;  // a failed read shortened the hit
    if (swapped) swap_in(seq);
    const int64_t n_hit = hit.n;
    const int64_t n_dev_hit = n_hit - static_cast<int64_t>(hit.host.size());
    for (int g = 0; g < n_groups() && n_dev_hit > 0; ++g) {
      const std::vector<int32_t>& hb = hit.blocks[g];
      for (int64_t j = 0; j < n_dev_hit; ++j) {
        if (j >= hit.first_live[g]) pool(g).acquire_cached(hb[static_cast<size_t>(j)]);
        seq->table(g).push_back(hb[static_cast<size_t>(j)]);
      }
      seq->n_dropped[g] = std::min(hit.first_live[g], n_dev_hit);
    }
    if (!hit.host.empty()) {
      // Pinned while fresh blocks are taken: evictions they cause are offered to the host cache.
      // Disk hits are staged already (read_disk_hits): nothing the allocation does touches them.
      const size_t nh = hit.host.size();
      for (size_t j = 0; j < nh; ++j) {
        if (!hit.on_disk[j]) host_prefix_->pin(hit.host[j]);
      }
      std::vector<int32_t> fresh;
      const bool got = pool_.allocate(static_cast<int64_t>(nh), &fresh);
      int64_t staged = 0;
      for (size_t j = 0; got && j < nh; ++j) {
        if (hit.on_disk[j]) {
          host_prefix_->copy_in_staged(staged++, fresh[j]);
        } else {
          host_prefix_->copy_in(hit.host[j], fresh[j]);
        }
      }
      for (size_t j = 0; j < nh; ++j) {
        if (!hit.on_disk[j]) host_prefix_->unpin(hit.host[j]);
      }
      ELI_CHECK_KIND(kInternal, got, "KV blocks vanished during admission");
      seq->blocks.insert(seq->blocks.end(), fresh.begin(), fresh.end());
      const int64_t n_disk = static_cast<int64_t>(std::count(hit.on_disk.begin(), hit.on_disk.end(), 1));
      host_prefix_hits_ += (static_cast<int64_t>(nh) - n_disk) * B;
      disk_prefix_hits_ += n_disk * B;
    }
    seq->num_computed = computed;
    // Host hits are registered again (cache_full_blocks) like blocks the sequence filled.
    seq->n_cached_blocks = n_dev_hit;
    seq->n_cached_blocks1 = n_dev_hit;
    ELI_CHECK_KIND(kInternal, grow_blocks(seq, computed + n_new), "KV blocks vanished during admission");
    if (swapped) {
      for (int g = 0; g < n_groups(); ++g) {  // placeholders name the first held block
        std::vector<int32_t>& t = seq->table(g);
        std::fill(t.begin(), t.begin() + seq->n_dropped[g], t[static_cast<size_t>(seq->n_dropped[g])]);
      }
    }
    if (lookup) {
      prefix_cache_queries_ += seq->n_tokens();
      prefix_cache_hits_ += n_hit * B;
    }
    waiting_.pop_front();
    seq->state = SeqState::kRunning;
    running_.push_back(seq);
    out.push_back({seq, n_new, seq->num_computed + n_new == seq->n_tokens()});
    budget -= n_new;
  }
  return out;
}

}  // namespace eli
