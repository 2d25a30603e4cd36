// The run log: JSON lines that parse (escapes, no NaN literal), a resumed log that drops the steps an
// interrupted run logged after its last checkpoint, and the ETA format.
#include <gtest/gtest.h>

#include <cmath>

#include "moco/run_log.h"
#include "temp_dir.h"

using namespace moco;
using namespace moco::test;

TEST(RunLog, JsonRecordEscapesAndHasNoNanLiteral) {
  const std::string line = JsonRecord()
                               .add("step", (int64_t)3)
                               .add("loss", 0.5)
                               .add("path", "a\"b\\c\n")
                               .add("bad", std::nan(""))
                               .str();
  EXPECT_EQ(line, "{\"step\": 3, \"loss\": 0.5, \"path\": \"a\\\"b\\\\c\\u000a\", \"bad\": null}");
}

TEST(RunLog, ResumedLogDropsStepsAfterTheCheckpoint) {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  {
    MetricsLog log(path, -1);
    log.write(JsonRecord().add("event", "config"));
    for (int64_t s = 1; s <= 5; ++s) log.write(JsonRecord().add("step", s).add("loss", 1.0));
  }
  {
    MetricsLog log(path, 3);  // resumed from a checkpoint at step 3
    log.write(JsonRecord().add("step", (int64_t)4).add("loss", 2.0));
  }
  EXPECT_EQ(read_bytes(path),
            "{\"event\": \"config\"}\n{\"step\": 1, \"loss\": 1}\n{\"step\": 2, \"loss\": 1}\n"
            "{\"step\": 3, \"loss\": 1}\n{\"step\": 4, \"loss\": 2}\n");
}

TEST(RunLog, DurationFormat) {
  EXPECT_EQ(Progress::duration(12.4), "12s");
  EXPECT_EQ(Progress::duration(185), "3m05s");
  EXPECT_EQ(Progress::duration(3725), "1h02m");
}
