// The emulated NCCL's TCP mesh (emu_nccl_mesh.h) on its own, its ranks as threads of this process: messages
// arrive whole and in order between every pair, larger than the sockets' buffers and with every rank sending
// before it receives; sizes that disagree, a rank that never joins and a peer that leaves are errors that say
// so, not hangs.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "emu_nccl_mesh.h"
#include "moco/local_ranks.h"

using emu_nccl::Mesh;

namespace {

std::string free_address() { return "127.0.0.1:" + std::to_string(moco::free_local_port()); }

Mesh::Gpu gpu(int device) {
  Mesh::Gpu g{};
  std::strcpy(g.host, "node0");
  g.device = device;
  return g;
}

// Joins n ranks on n threads; meshes[r] is null with errors[r] set where rank r failed.
void join_all(int n, double timeout_s, std::vector<std::unique_ptr<Mesh>>& meshes, std::vector<std::string>& errors) {
  const std::string address = free_address();
  meshes.resize((size_t)n);
  errors.assign((size_t)n, "");
  std::vector<std::thread> ranks;
  for (int r = 0; r < n; ++r)
    ranks.emplace_back([&, r] { meshes[(size_t)r] = Mesh::join(address, n, r, gpu(r), timeout_s, &errors[(size_t)r]); });
  for (auto& t : ranks) t.join();
}

// The byte rank `from` sends to rank `to` at position i of message m.
uint8_t pattern(int from, int to, int m, size_t i) { return (uint8_t)(from * 131 + to * 31 + m * 7 + i * 13); }

}  // namespace

TEST(EmulatedNcclMesh, EveryPairExchangesWholeMessagesInOrder) {
  constexpr int n = 3;
  std::vector<std::unique_ptr<Mesh>> meshes;
  std::vector<std::string> errors;
  join_all(n, 30, meshes, errors);
  for (int r = 0; r < n; ++r) {
    ASSERT_TRUE(meshes[(size_t)r]) << "rank " << r << ": " << errors[(size_t)r];
    ASSERT_EQ(meshes[(size_t)r]->gpus().size(), (size_t)n);
    for (int q = 0; q < n; ++q) EXPECT_EQ(meshes[(size_t)r]->gpus()[(size_t)q].device, q) << "rank " << r << " on " << q;
  }
  // three messages to each peer: empty, 1 byte, 3 MiB (far beyond a socket's buffer, so a rank that sent
  // everything before receiving would block the others)
  const size_t sizes[] = {0, 1, size_t(3) << 20};
  std::vector<std::vector<std::vector<uint8_t>>> sent(n), got(n);  // [rank][peer * 3 + m] (sizes[m]) bytes
  std::vector<std::string> failures((size_t)n);
  std::vector<std::thread> ranks;
  for (int r = 0; r < n; ++r) {
    sent[(size_t)r].resize(n * 3);
    got[(size_t)r].resize(n * 3);
    ranks.emplace_back([&, r] {
      std::vector<Mesh::Transfer> sends, recvs;
      for (int p = 0; p < n; ++p)
        for (int m = 0; m < 3; ++m) {
          if (p == r) continue;
          auto& s = sent[(size_t)r][(size_t)(p * 3 + m)];
          auto& g = got[(size_t)r][(size_t)(p * 3 + m)];
          s.resize(sizes[m]);
          g.assign(sizes[m], 0);
          for (size_t i = 0; i < s.size(); ++i) s[i] = pattern(r, p, m, i);
          sends.push_back({p, s.data(), s.size()});
          recvs.push_back({p, g.data(), g.size()});
        }
      std::string e;
      if (!meshes[(size_t)r]->exchange(sends, recvs, &e)) failures[(size_t)r] = e;
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < n; ++r) {
    ASSERT_EQ(failures[(size_t)r], "") << "rank " << r;
    for (int p = 0; p < n; ++p)
      for (int m = 0; m < 3; ++m) {
        if (p == r) continue;
        const auto& g = got[(size_t)r][(size_t)(p * 3 + m)];
        size_t wrong = 0;
        for (size_t i = 0; i < g.size(); ++i) wrong += g[i] != pattern(p, r, m, i);
        EXPECT_EQ(wrong, 0u) << "rank " << r << ", message " << m << " from rank " << p;
      }
  }
}

TEST(EmulatedNcclMesh, SizesThatDisagreeAreAnErrorNamingThem) {
  std::vector<std::unique_ptr<Mesh>> meshes;
  std::vector<std::string> errors;
  join_all(2, 30, meshes, errors);
  ASSERT_TRUE(meshes[0] && meshes[1]) << errors[0] << errors[1];
  std::vector<char> a(10), b(12);
  std::string e0, e1;
  bool ok0 = true;
  std::thread rank0([&] { ok0 = meshes[0]->exchange({{1, a.data(), a.size()}}, {}, &e0); });
  const bool ok1 = meshes[1]->exchange({}, {{0, b.data(), b.size()}}, &e1);
  rank0.join();
  EXPECT_TRUE(ok0) << e0;
  EXPECT_FALSE(ok1);
  EXPECT_NE(e1.find("rank 0 sent 10 bytes where 12 were to be received"), std::string::npos) << e1;
}

TEST(EmulatedNcclMesh, ARankThatNeverJoinsEndsTheJoinAtItsLimit) {
  std::string error;
  const auto m = Mesh::join(free_address(), 2, 0, gpu(0), 0.3, &error);  // rank 1 never comes
  EXPECT_FALSE(m);
  EXPECT_NE(error.find("timed out waiting for the other ranks to join"), std::string::npos) << error;
  std::string late;
  const auto lone = Mesh::join(free_address(), 2, 1, gpu(1), 0.3, &late);  // rank 0 never listens
  EXPECT_FALSE(lone);
  EXPECT_NE(late.find("timed out connecting to rank 0"), std::string::npos) << late;
}

TEST(EmulatedNcclMesh, APeerThatLeavesIsAnError) {
  std::vector<std::unique_ptr<Mesh>> meshes;
  std::vector<std::string> errors;
  join_all(2, 30, meshes, errors);
  ASSERT_TRUE(meshes[0] && meshes[1]) << errors[0] << errors[1];
  meshes[1].reset();  // its connections close
  std::vector<char> buf(16);
  std::string e;
  EXPECT_FALSE(meshes[0]->exchange({}, {{1, buf.data(), buf.size()}}, &e));
  EXPECT_NE(e.find("rank 1 closed its connection"), std::string::npos) << e;
}
