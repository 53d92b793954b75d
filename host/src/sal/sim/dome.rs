//! The ATDome model: the azimuth moves to random targets, the main door opens and closes, and
//! the `position` telemetry follows them.

use love_plugin_api::abi::Value;
use rand::Rng;

use super::generic::{float, int, Ctx};
use super::{Model, Override};

/// ATDome model: azimuth moves to random targets, the main door opens and closes.
#[derive(Default)]
pub(super) struct DomeSim {
    azimuth: f64,
    target: f64,
    moving: bool,
    door: f64,
    /// 0 still, +1 opening, -1 closing.
    door_dir: i32,
}

/// ATDome enumerations.
mod dome {
    pub const AZ_NOT_IN_MOTION: i64 = 1;
    pub const AZ_MOVING_CW: i64 = 2;
    pub const AZ_MOVING_CCW: i64 = 3;
    pub const AZ_CMD_GO_TO_POSITION: i64 = 2;
    pub const DOOR_CLOSED: i64 = 1;
    pub const DOOR_OPENED: i64 = 2;
    pub const DOOR_OPENING: i64 = 4;
    pub const DOOR_CLOSING: i64 = 5;
}

impl Model for DomeSim {
    fn start(&mut self, ctx: &mut Ctx) {
        self.azimuth = (ctx.rng.gen_range(0.0..360.0f64) * 10.0).round() / 10.0;
        self.target = self.azimuth;
        ctx.event("azimuthState", vec![("state", int(dome::AZ_NOT_IN_MOTION)), ("homed", Value::Bool(true))]);
        ctx.event("mainDoorState", vec![("state", int(dome::DOOR_CLOSED))]);
        ctx.event("dropoutDoorState", vec![("state", int(dome::DOOR_CLOSED))]);
        ctx.event("azimuthInPosition", vec![("inPosition", Value::Bool(true))]);
        ctx.event("shutterInPosition", vec![("inPosition", Value::Bool(true))]);
        ctx.event("emergencyStop", vec![("active", Value::Bool(false))]);
    }

    fn tick(&mut self, ctx: &mut Ctx) {
        const SPEED: f64 = 4.0; // deg per tick
        if !self.moving && ctx.rng.gen_bool(0.05) {
            self.target = (ctx.rng.gen_range(0.0..360.0f64) * 10.0).round() / 10.0;
            self.moving = true;
            let diff = (self.target - self.azimuth + 540.0).rem_euclid(360.0) - 180.0;
            let st = if diff >= 0.0 { dome::AZ_MOVING_CW } else { dome::AZ_MOVING_CCW };
            ctx.event(
                "azimuthCommandedState",
                vec![("commandedState", int(dome::AZ_CMD_GO_TO_POSITION)), ("azimuth", float(self.target))],
            );
            ctx.event("azimuthState", vec![("state", int(st)), ("homed", Value::Bool(true))]);
            ctx.event("azimuthInPosition", vec![("inPosition", Value::Bool(false))]);
        }
        if self.moving {
            let diff = (self.target - self.azimuth + 540.0).rem_euclid(360.0) - 180.0;
            if diff.abs() <= SPEED {
                self.azimuth = self.target;
                self.moving = false;
                ctx.event("azimuthState", vec![("state", int(dome::AZ_NOT_IN_MOTION)), ("homed", Value::Bool(true))]);
                ctx.event("azimuthInPosition", vec![("inPosition", Value::Bool(true))]);
            } else {
                self.azimuth = (self.azimuth + SPEED * diff.signum()).rem_euclid(360.0);
            }
        }
        if self.door_dir == 0 && ctx.rng.gen_bool(0.03) {
            self.door_dir = if self.door > 50.0 { -1 } else { 1 };
            let st = if self.door_dir > 0 { dome::DOOR_OPENING } else { dome::DOOR_CLOSING };
            ctx.event("mainDoorState", vec![("state", int(st))]);
            ctx.event("shutterInPosition", vec![("inPosition", Value::Bool(false))]);
        } else if self.door_dir != 0 {
            self.door = (self.door + 10.0 * self.door_dir as f64).clamp(0.0, 100.0);
            if self.door <= 0.0 || self.door >= 100.0 {
                let st = if self.door >= 100.0 { dome::DOOR_OPENED } else { dome::DOOR_CLOSED };
                self.door_dir = 0;
                ctx.event("mainDoorState", vec![("state", int(st))]);
                ctx.event("shutterInPosition", vec![("inPosition", Value::Bool(true))]);
            }
        }
    }

    fn overrides(&self) -> Vec<Override> {
        vec![
            ("position", "azimuthPosition", float(self.azimuth)),
            ("position", "mainDoorOpeningPercentage", float(self.door)),
            ("position", "dropoutDoorOpeningPercentage", float(0.0)),
            ("position", "azimuthEncoderPosition", int((self.azimuth * 1000.0).round() as i64)),
        ]
    }
}
