//! The terminal side of `mxgate top`: the full-screen view (ratatui over
//! crossterm), redrawn each interval, `q` (or Esc, Ctrl-C) quits; and the
//! test of whether the terminal can show it at all.

use std::{
    io::{IsTerminal as _, Write as _},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor,
        event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
        execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
    style::{Color, Modifier, Style},
    text::{Line, Span, Text},
    widgets::Paragraph,
};

use super::view::{Emphasis, View, lines};

/// Whether standard output is a terminal that can show the full-screen
/// view: a tty whose `TERM` is set and not `dumb`.
pub fn capable() -> bool {
    let term = std::env::var("TERM").unwrap_or_default();
    std::io::stdout().is_terminal() && !term.is_empty() && term != "dumb"
}

/// Puts the terminal back as it was, also when the view fails.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(std::io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
}

fn style(e: Emphasis) -> Style {
    match e {
        Emphasis::Plain => Style::default(),
        Emphasis::Heading => Style::default().add_modifier(Modifier::BOLD),
        Emphasis::Alert => Style::default()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD),
        Emphasis::Slow => Style::default()
            .fg(Color::Yellow)
            .add_modifier(Modifier::BOLD),
        Emphasis::Good => Style::default()
            .fg(Color::Green)
            .add_modifier(Modifier::BOLD),
    }
}

fn text(view: &View) -> Text<'static> {
    Text::from(
        lines(view, true)
            .into_iter()
            .map(|line| {
                Line::from(
                    line.into_iter()
                        .map(|(s, e)| Span::styled(s, style(e)))
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>(),
    )
}

/// Whether `event` asks to quit.
fn quits(event: &Event) -> bool {
    let Event::Key(key) = event else {
        return false;
    };
    key.kind == KeyEventKind::Press
        && (matches!(key.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc)
            || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)))
}

/// The full-screen view: `first` at once, then what `next` returns each
/// `interval`, until a key asks to quit.
pub fn interactive(
    interval: Duration,
    first: View,
    mut next: impl FnMut() -> anyhow::Result<View>,
) -> anyhow::Result<()> {
    terminal::enable_raw_mode().context("switching the terminal to raw mode")?;
    let _restore = Restore;
    execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide)
        .context("switching to the alternate screen")?;
    let mut screen =
        Terminal::new(CrosstermBackend::new(std::io::stdout())).context("opening the terminal")?;
    let mut view = first;
    loop {
        screen
            .draw(|frame| frame.render_widget(Paragraph::new(text(&view)), frame.area()))
            .context("drawing")?;
        let due = Instant::now() + interval;
        loop {
            let left = due.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if event::poll(left).context("reading the keyboard")? {
                let event = event::read().context("reading the keyboard")?;
                if quits(&event) {
                    return Ok(());
                }
                if let Event::Resize(..) = event {
                    screen
                        .draw(|frame| {
                            frame.render_widget(Paragraph::new(text(&view)), frame.area());
                        })
                        .context("drawing")?;
                }
            }
        }
        view = next()?;
    }
}

/// Plain text, one view per interval, separated by an empty line, until
/// interrupted (a dumb terminal, a pipe).
pub fn plain(
    interval: Duration,
    first: View,
    mut next: impl FnMut() -> anyhow::Result<View>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut view = first;
    loop {
        writeln!(out, "{}", super::view::text(&view)).context("writing to standard output")?;
        out.flush().context("writing to standard output")?;
        std::thread::sleep(interval);
        view = next()?;
    }
}
