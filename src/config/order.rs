//! Start order of the main jobs (`after`): cycles, and the order `check` reports. Pure: jobs
//! are indices, `after[i]` lists the jobs job `i` waits for.

/// A cycle in `after`, as the jobs along it (the first repeated at the end), if there is one.
pub fn find_cycle(after: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        job: usize,
        after: &[Vec<usize>],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[job] = Mark::OnPath;
        path.push(job);
        for &first in after.get(job).into_iter().flatten() {
            match marks.get(first) {
                Some(Mark::OnPath) => {
                    let start = path.iter().position(|&j| j == first).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(first);
                    return Some(cycle);
                }
                Some(Mark::New) => {
                    if let Some(cycle) = visit(first, after, marks, path) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        marks[job] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; after.len()];
    for job in 0..after.len() {
        if marks[job] == Mark::New {
            let mut path = Vec::new();
            if let Some(cycle) = visit(job, after, &mut marks, &mut path) {
                return Some(cycle);
            }
        }
    }
    None
}

/// The jobs in waves: every job of a wave waits only for jobs of earlier waves. `None` if
/// there is a cycle.
pub fn waves(after: &[Vec<usize>]) -> Option<Vec<Vec<usize>>> {
    let mut wave_of: Vec<Option<usize>> = vec![None; after.len()];
    let mut waves: Vec<Vec<usize>> = Vec::new();
    let mut placed = 0;
    while placed < after.len() {
        let wave: Vec<usize> = (0..after.len())
            .filter(|&job| wave_of[job].is_none())
            .filter(|&job| {
                after[job]
                    .iter()
                    .all(|&first| wave_of.get(first).copied().flatten().is_some())
            })
            .collect();
        if wave.is_empty() {
            return None;
        }
        for &job in &wave {
            wave_of[job] = Some(waves.len());
        }
        placed += wave.len();
        waves.push(wave);
    }
    Some(waves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_and_diamonds_have_no_cycle_and_come_in_waves() {
        // 0 <- 1 <- 3, 0 <- 2 <- 3
        let after = vec![vec![], vec![0], vec![0], vec![1, 2]];
        assert_eq!(find_cycle(&after), None);
        assert_eq!(waves(&after), Some(vec![vec![0], vec![1, 2], vec![3]]));
    }

    #[test]
    fn cycles_are_found_with_their_path() {
        assert_eq!(find_cycle(&[vec![0]]), Some(vec![0, 0]));
        let after = vec![vec![], vec![2], vec![3], vec![1]];
        assert_eq!(find_cycle(&after), Some(vec![1, 2, 3, 1]));
        assert_eq!(waves(&after), None);
    }
}
