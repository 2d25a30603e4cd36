// The run log: JSON lines that parse (escapes, no NaN literal), a resumed log that drops the steps an
// interrupted run logged after its last checkpoint, and the ETA format.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <vector>

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
                               .add("next_ready", true)
                               .add("staged", false)
                               .str();
  EXPECT_EQ(line, "{\"step\": 3, \"loss\": 0.5, \"path\": \"a\\\"b\\\\c\\u000a\", \"bad\": null, "
                  "\"next_ready\": true, \"staged\": false}");
}

// Floats (the step's loss, accuracies, learning rate) in the fewest digits that read back as the same float.
TEST(RunLog, FloatsAreWrittenInTheirShortestExactForm) {
  const std::string line =
      JsonRecord().add("lr", 0.06f).add("loss", 0.1f).add("tiny", 1e-30f).add("bad", std::nanf("")).str();
  EXPECT_EQ(line, "{\"lr\": 0.06, \"loss\": 0.1, \"tiny\": 1e-30, \"bad\": null}");
  for (const float v : {0.06f, 1.0f / 3.0f, 0.1f + 0.2f, 3.4e38f, 1.17549435e-38f, -2.5e-7f}) {
    const std::string field = JsonRecord().add("v", v).str();  // {"v": X}
    const std::string x = field.substr(6, field.size() - 7);
    EXPECT_EQ(std::strtof(x.c_str(), nullptr), v) << field;
    EXPECT_LE(x.size(), 15u) << field;
  }
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

// The progress line's "data" share: the time steps waited for the loader over the interval since the last
// line, accumulated over the steps that printed nothing, and capped at 100%.
TEST(RunLog, ProgressShowsTheShareOfTimeSpentWaitingForData) {
  Progress p(/*total_steps=*/10, /*first_step=*/0, /*every=*/2, /*images_per_step=*/8);
  const std::string line = p.update(1, 0, 1, 1, 10, 1.0, 0.0, 0.0, 1e6);  // an epoch's first step prints
  EXPECT_NE(line.find("data 100%"), std::string::npos) << line;
  const std::string fed = p.update(3, 0, 1, 3, 10, 1.0, 0.0, 0.0, 0.0);  // the wait was counted once, then reset
  EXPECT_NE(fed.find("data 0%"), std::string::npos) << fed;
}

// Lines fall where main_moco.py prints (`if i % args.print_freq == 0`, i = 0, 1, ... within each epoch): with
// -p 10 and 25 steps an epoch, after steps 1, 11 and 21 of every epoch, whatever the global step count.
TEST(RunLog, ProgressLinesFallOnTheAuthorsStepsOfEachEpoch) {
  std::vector<int64_t> printed;
  for (int64_t i = 0; i < 25; ++i)  // the authors' loop index
    if (i % 10 == 0) printed.push_back(i + 1);
  std::vector<int64_t> ours;
  for (int64_t step_in_epoch = 1; step_in_epoch <= 25; ++step_in_epoch)
    if (Progress::prints_after(step_in_epoch, 10)) ours.push_back(step_in_epoch);
  EXPECT_EQ(ours, printed);
  EXPECT_EQ(ours, (std::vector<int64_t>{1, 11, 21}));
  EXPECT_TRUE(Progress::prints_after(1, 1) && Progress::prints_after(2, 1));  // -p 1: every step
  // update() decides by the step within the epoch, not the run's step count (a terminal redraws every step)
  if (isatty(STDERR_FILENO)) return;
  Progress p(/*total_steps=*/100, /*first_step=*/0, /*every=*/10, /*images_per_step=*/8);
  EXPECT_FALSE(p.update(26, 1, 4, 1, 25, 1.0, 0.0, 0.0).empty()) << "the second epoch's first step";
  EXPECT_TRUE(p.update(30, 1, 4, 5, 25, 1.0, 0.0, 0.0).empty()) << "global step 30 is the epoch's 5th";
  EXPECT_FALSE(p.update(36, 1, 4, 11, 25, 1.0, 0.0, 0.0).empty()) << "the epoch's 11th step";
}
